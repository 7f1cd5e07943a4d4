/* SPDX-License-Identifier: MIT */
/*
 * Money as an exact decimal: a signed count of cents in an int64. The
 * contract (SPEC §2) allows at most 2 fractional digits and at most 18
 * digits in all, so every valid amount fits. Parsing is from decimal text
 * only; binary floating point never touches a price.
 */
#ifndef MS_CORE_MONEY_H
#define MS_CORE_MONEY_H

#include <stddef.h>
#include <stdint.h>

#define MS_MONEY_MAX_DIGITS 18
/* 9999999999999999.99: the largest amount with 18 digits, in cents. */
#define MS_MONEY_MAX_CENTS 999999999999999999LL
#define MS_MONEY_STRLEN    24 /* "-9999999999999999.99" + NUL, rounded up */

/*
 * ms_money_parse parses |len| bytes of |s|: an optional '-', digits, an
 * optional '.' followed by 1 or 2 digits, or an exponent form whose value has
 * at most 2 fractional digits ("1.5e2"), as JSON numbers may be written.
 * Leading zeros are allowed ("0.50", "007"). Trailing zeros in the fraction
 * beyond two ("1.500") are accepted because their value has two decimals.
 * Returns 0, or MS_EINVAL when |s| is not such a number, has more than 2
 * significant fractional digits, or more than 18 significant digits.
 */
int ms_money_parse(const char *s, size_t len, int64_t *cents);

/*
 * ms_money_format writes |cents| to |buf| in the shortest exact form:
 * 35000 → "350", 35050 → "350.5", 35025 → "350.25",
 * -5 → "-0.05". Returns |buf|. |buf| must hold MS_MONEY_STRLEN bytes.
 */
char *ms_money_format(int64_t cents, char *buf);

/*
 * ms_money_format_fixed writes |cents| always with two decimals
 * ("1400.00"), the form used in events (MassTransit decimals).
 */
char *ms_money_format_fixed(int64_t cents, char *buf);

/*
 * ms_money_mul_add computes *acc += price * qty, checking for overflow past
 * MS_MONEY_MAX_CENTS in magnitude. Returns 0 or MS_EINVAL.
 */
int ms_money_mul_add(int64_t *acc, int64_t price, int64_t qty);

#endif
