/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the REST router on raw paths and query strings
 * (http_router_match, http_query_get) over the real route table of the
 * three modules, and then the matched route's handler (GET and DELETE
 * read their path parameters and the query: user names, GUIDs, pageIndex
 * and pageSize), with the real modules behind it (fuzz_env.h).
 *
 * Input: byte 0 picks the method, byte 1 the size of the buffer
 * http_query_get copies into (1..256, allocated to the byte so that ASan
 * sees an overrun); then "PATH[?QUERY]", and after a NUL, a query name to
 * look up besides pageIndex and pageSize. The path is what libmicrohttpd
 * hands the edge (percent-decoded, any bytes); like the edge
 * (src/http/server.c: begin), only a valid UTF-8 path reaches a handler.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "fuzz_env.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet();
	fz_env_tick();
	return 0;
}

static void
query(const char *q, const char *name, size_t buflen)
{
	char *buf = malloc(buflen);
	int rc;

	if (buf == NULL) {
		return;
	}
	rc = http_query_get(q, name, buf, buflen);
	if (rc == 0 && strlen(buf) >= buflen) {
		fz_fail("http_query_get: value longer than its buffer");
	}
	if (rc != 0 && rc != MS_ENOTFOUND && rc != MS_ETOOBIG) {
		fz_fail("http_query_get: unexpected %s", ms_errname(rc));
	}
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_env *e;
	struct http_match m;
	enum http_method method;
	size_t buflen;
	char *text, *q, *name;
	int rc;

	if (size < 2) {
		return 0;
	}
	e = fz_env_tick();
	method = (enum http_method)(HTTP_GET + data[0] % HTTP_OTHER);
	buflen = (size_t)data[1] + 1;
	/* "PATH?QUERY\0NAME\0": the two strings, NUL-terminated. */
	if ((text = malloc(size - 2 + 2)) == NULL) {
		return 0;
	}
	memcpy(text, data + 2, size - 2);
	text[size - 2] = '\0';
	text[size - 1] = '\0';
	name = text + strlen(text) + 1;
	q = strchr(text, '?');
	if (q != NULL) {
		*q++ = '\0';
	}

	rc = http_router_match(e->router, method, text, &m);
	if (rc == 0) {
		if (m.fn == NULL || m.pattern == NULL ||
		    m.nparams > HTTP_MAX_PARAMS) {
			fz_fail("http_router_match: incomplete match");
		}
		for (size_t i = 0; i < m.nparams; i++) {
			if (m.param_len[i] == 0 ||
			    m.param_off[i] + m.param_len[i] > strlen(text)) {
				fz_fail("http_router_match: bad parameter");
			}
		}
	} else if (rc == MS_EMETHOD) {
		if (m.allow[0] == '\0') {
			fz_fail("http_router_match: 405 without Allow");
		}
	} else if (rc != MS_ENOTFOUND) {
		fz_fail("http_router_match: unexpected %s", ms_errname(rc));
	}
	if (q != NULL) {
		query(q, "pageIndex", buflen);
		query(q, "pageSize", buflen);
		query(q, name, buflen);
	}
	if (rc == 0 && ms_utf8_valid(text, strlen(text))) {
		fz_rest(method, text, q, NULL, 0, NULL);
	}
	free(text);
	return 0;
}
