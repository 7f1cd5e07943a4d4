/* SPDX-License-Identifier: MIT */
/*
 * Exact money (money.h): parsing decimal text into cents, formatting cents
 * back, and overflow-checked arithmetic. Binary floating point is never
 * used, so "0.1" + "0.2" is exactly 30 cents.
 *
 * The accepted grammar is the JSON number grammar with leading zeros
 * allowed:  -? DIGIT+ ( '.' DIGIT+ )? ( [eE] [+-]? DIGIT+ )?
 * so "1.", ".5", "+1", " 1", "0x10", "NaN" and "Infinity" are all rejected
 * (".5" is refused on purpose: no JSON encoder produces it, and accepting
 * it only widens what a client can get away with). The value, not the
 * spelling, must then fit decimal(18,2) — the column type of the original
 * Ordering database: a whole number of cents of at most 18 digits, i.e. at
 * most MS_MONEY_MAX_CENTS in magnitude. So "1.500" and "15e-1" are fine,
 * "1.005" and "1e-3" are not, and "1e16" is one digit too many.
 *
 * Threads: pure functions.
 */
#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "core/err.h"
#include "core/money.h"

/* Exponents are read saturating at this magnitude: far beyond any that
 * can give a valid amount, far below where int64 arithmetic on positions
 * could overflow. */
#define EXP_LIMIT 1000000000LL

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int
ms_money_parse(const char *s, size_t len, int64_t *cents)
{
	size_t i = 0, int_start, int_len, frac_start = 0, frac_len = 0;
	bool neg = false, exp_neg = false;
	long long exp = 0;
	long long first_place = 0, last_place = 0; /* powers of ten */
	bool any_nonzero = false;
	int64_t v = 0;

	if (s == NULL) {
		return MS_EINVAL;
	}
	if (i < len && s[i] == '-') {
		neg = true;
		i++;
	}
	int_start = i;
	while (i < len && is_digit(s[i])) {
		i++;
	}
	int_len = i - int_start;
	if (int_len == 0) {
		return MS_EINVAL; /* "", "-", ".5", "+1", "NaN", ... */
	}
	if (i < len && s[i] == '.') {
		i++;
		frac_start = i;
		while (i < len && is_digit(s[i])) {
			i++;
		}
		frac_len = i - frac_start;
		if (frac_len == 0) {
			return MS_EINVAL; /* "1." */
		}
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t exp_start;

		i++;
		if (i < len && (s[i] == '+' || s[i] == '-')) {
			exp_neg = s[i] == '-';
			i++;
		}
		exp_start = i;
		while (i < len && is_digit(s[i])) {
			if (exp < EXP_LIMIT) {
				exp = exp * 10 + (s[i] - '0');
			}
			i++;
		}
		if (i == exp_start) {
			return MS_EINVAL; /* "1e", "1e+" */
		}
		if (exp_neg) {
			exp = -exp;
		}
	}
	if (i != len) {
		return MS_EINVAL; /* trailing bytes: spaces, "0x10", ... */
	}

	/*
	 * Find the places (powers of ten, before the exponent) of the first
	 * and last non-zero digits. A digit at index k of the integer part
	 * sits at place int_len-1-k; one at index k of the fraction at
	 * place -(k+1). Parts longer than EXP_LIMIT digits are refused: no
	 * request body is that long (http.max_body is at most 64M), and the
	 * bound keeps every place well inside long long.
	 */
	if (int_len > (size_t)EXP_LIMIT || frac_len > (size_t)EXP_LIMIT) {
		return MS_EINVAL;
	}
	for (size_t k = 0; k < int_len + frac_len; k++) {
		char c = k < int_len ? s[int_start + k]
		                     : s[frac_start + (k - int_len)];
		long long place = k < int_len ? (long long)(int_len - 1 - k)
		                              : -(long long)(k - int_len + 1);
		if (c != '0') {
			if (!any_nonzero) {
				first_place = place;
			}
			last_place = place;
			any_nonzero = true;
		}
	}
	if (!any_nonzero) {
		*cents = 0; /* "0", "-0", "0.000e99999" */
		return 0;
	}
	first_place += exp;
	last_place += exp;
	/* No non-zero digit below the cents, none above 10^15 (the top
	 * digit of 9999999999999999.99): at most 18 digits of cents. */
	if (last_place < -2 || first_place > MS_MONEY_MAX_DIGITS - 3) {
		return MS_EINVAL;
	}

	/* Read the digits place by place from the first non-zero one down
	 * to the cents (at most 18 of them, so |v| can not overflow); a
	 * place the spelling does not reach (shifted there by the exponent)
	 * holds a zero. */
	for (long long p = first_place; p >= -2; p--) {
		long long q = p - exp; /* the place as spelled */
		int d = 0;

		if (q >= 0 && q < (long long)int_len) {
			d = s[int_start + (int_len - 1 - (size_t)q)] - '0';
		} else if (q < 0 && -q <= (long long)frac_len) {
			d = s[frac_start + (size_t)(-q - 1)] - '0';
		}
		v = v * 10 + d;
	}
	assert(v <= MS_MONEY_MAX_CENTS);
	*cents = neg ? -v : v;
	return 0;
}

/* magnitude of |cents| as unsigned, defined even for INT64_MIN. */
static uint64_t
magnitude(int64_t cents)
{
	return cents < 0 ? (uint64_t)(-(cents + 1)) + 1 : (uint64_t)cents;
}

static char *
format(int64_t cents, char *buf, bool fixed)
{
	uint64_t m = magnitude(cents);
	uint64_t whole = m / 100;
	unsigned frac = (unsigned)(m % 100);
	char tmp[MS_MONEY_STRLEN];
	size_t n = 0, o = 0;

	/* Digits of the whole part, least significant first. */
	do {
		tmp[n++] = (char)('0' + whole % 10);
		whole /= 10;
	} while (whole > 0);
	if (cents < 0) {
		buf[o++] = '-';
	}
	while (n > 0) {
		buf[o++] = tmp[--n];
	}
	if (fixed || frac != 0) {
		buf[o++] = '.';
		buf[o++] = (char)('0' + frac / 10);
		if (fixed || frac % 10 != 0) {
			buf[o++] = (char)('0' + frac % 10);
		}
	}
	buf[o] = '\0';
	return buf;
}

char *
ms_money_format(int64_t cents, char *buf)
{
	return format(cents, buf, false);
}

char *
ms_money_format_fixed(int64_t cents, char *buf)
{
	return format(cents, buf, true);
}

int
ms_money_mul_add(int64_t *acc, int64_t price, int64_t qty)
{
	int64_t prod, sum;

	if (__builtin_mul_overflow(price, qty, &prod) ||
	    __builtin_add_overflow(*acc, prod, &sum) ||
	    sum > MS_MONEY_MAX_CENTS || sum < -MS_MONEY_MAX_CENTS) {
		return MS_EINVAL;
	}
	*acc = sum;
	return 0;
}
