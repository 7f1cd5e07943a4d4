/* SPDX-License-Identifier: MIT */
/*
 * The shared environment of the fuzz targets (fuzz_env.h): the modules on a
 * real bus, as src/main.c starts them, minus the HTTP listener; the gRPC
 * listener the bus starts for the served Discount is put on a free port
 * (127.0.0.1:0) and never spoken to. fz_rest is src/http/server.c's
 * finish() without libmicrohttpd.
 *
 * Threads: libFuzzer's thread only (the bus keeps its own). Memory: the
 * environment is one static struct, freed at exit so that LeakSanitizer
 * sees only real leaks.
 */
#define _XOPEN_SOURCE 700
#include "fuzz_env.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_core.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "http/json.h"
#include "modules/module.h"

static struct fz_env env;
static bool env_up;

/* main.c's order: providers first (FZ_NMODULES of them). */
static const struct ms_module *const modules[FZ_NMODULES] = {
    &discount_module,
    &ordering_module,
    &basket_module,
};

void
fz_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz oracle: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

void
fz_check_rc(int rc, const char *what)
{
	if (rc != 0 && ms_err_http(rc) == 500) {
		fz_fail("%s failed with %d (%s: %s): a server error", what, rc,
		        ms_errname(rc), ms_strerror(rc));
	}
}

/* With FUZZ_VERBOSE: what the inputs did, as /metrics would say it. */
static void
print_metrics(void)
{
	char *text = NULL;
	size_t len = 0;

	if (ms_metrics_render(&text, &len) == 0) {
		fprintf(stderr, "%.*s", (int)len, text);
	}
	free(text);
}

void
fz_quiet(void)
{
	if (getenv("FUZZ_VERBOSE")) {
		ms_log_set_level(MS_LOG_DEBUG);
		atexit(print_metrics);
	} else {
		ms_log_set_level(MS_LOG_ERROR);
	}
}

int
fz_tmpdir(char *out, size_t len)
{
	const char *base = getenv("TMPDIR");

	snprintf(out, len, "%s/monoshop-fuzz.XXXXXX", base ? base : "/tmp");
	return mkdtemp(out) ? 0 : -errno;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
fz_rmdir(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
set(const char *assignment)
{
	char err[256];

	if (ms_config_set(env.cfg, assignment, "fuzz", err, sizeof(err)) != 0) {
		fz_fail("config: %s", err);
	}
}

static void
down(void)
{
	if (!env_up) {
		return;
	}
	bus_stop(env.bus);
	for (size_t i = MS_ARRAY_SIZE(modules); i-- > 0;) {
		if (env.states[i] != NULL) {
			if (modules[i]->stop) {
				modules[i]->stop(env.states[i]);
			}
			modules[i]->fini(env.states[i]);
			env.states[i] = NULL;
		}
	}
	bus_destroy(env.bus);
	http_router_destroy(env.router);
	ms_config_destroy(env.cfg);
	fz_rmdir(env.dir);
	memset(&env, 0, sizeof(env));
	env_up = false;
}

static void
up(void)
{
	char buf[512];
	char err[256] = "";
	int rc;

	memset(&env, 0, sizeof(env));
	if (fz_tmpdir(env.dir, sizeof(env.dir)) != 0 ||
	    ms_config_create(&env.cfg) != 0 ||
	    bus_create(&env.bus, env.cfg) != 0 ||
	    http_router_create(&env.router) != 0) {
		fz_fail("cannot make the environment");
	}
	snprintf(buf, sizeof(buf), "node.data_dir=%s", env.dir);
	set(buf);
	set("grpc.listen=127.0.0.1:0");
	for (size_t i = 0; i < MS_ARRAY_SIZE(modules); i++) {
		const struct ms_module *m = modules[i];
		struct module_ctx ctx = {
		    .bus = env.bus,
		    .cfg = env.cfg,
		    .router = env.router,
		    .data_dir = env.dir,
		};
		if ((rc = m->init(&ctx, &env.states[i])) != 0) {
			fz_fail("module %s: %s", m->name, ms_strerror(rc));
		}
		for (const char *const(*c)[2] = m->calls; c && (*c)[0]; c++) {
			bus_require(env.bus, (*c)[0], (*c)[1]);
		}
		for (const char *const *p = m->publishes; p && *p; p++) {
			bus_expect_subscriber(env.bus, *p);
		}
	}
	if (bus_start(env.bus, err, sizeof(err)) != 0) {
		fz_fail("bus_start: %s", err);
	}
	env_up = true;
}

struct fz_env *
fz_env_tick(void)
{
	static bool registered;

	if (!registered) {
		atexit(down);
		registered = true;
	}
	if (env_up && env.uses >= FZ_RECYCLE) {
		down();
	}
	if (!env_up) {
		up();
	}
	env.uses++;
	return &env;
}

void
fz_check_metric_label(const char *prefix, const char *label,
                      const char *const *allowed)
{
	char *text = NULL;
	size_t len = 0;
	char key[64];
	size_t plen = strlen(prefix);

	if (ms_metrics_render(&text, &len) != 0) {
		return;
	}
	snprintf(key, sizeof(key), "%s=\"", label);
	/* Lines: name{label="value",...} number */
	for (char *save, *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *v = strstr(line, key);
		const char *end;
		bool ok = false;

		if (strncmp(line, prefix, plen) != 0 || v == NULL) {
			continue;
		}
		v += strlen(key);
		if ((end = strchr(v, '"')) == NULL) {
			fz_fail("%s: unterminated label %s", line, label);
		}
		for (const char *const *a = allowed; *a != NULL; a++) {
			ok |= strlen(*a) == (size_t)(end - v) &&
			      memcmp(*a, v, (size_t)(end - v)) == 0;
		}
		if (!ok) {
			fz_fail("a metric series of its own for %s %.*s", label,
			        (int)(end - v), v);
		}
	}
	free(text);
}

/* What the edge writes: the handler's body, or problem+json. */
static void
check_answer(int rc, struct http_resp *resp, const char *path, const char *what)
{
	json_t *doc;
	char *text;
	size_t len = 0;

	fz_check_rc(rc, what);
	if (rc == 0 && (resp->status < 100 || resp->status > 599)) {
		fz_fail("%s answered status %d", what, resp->status);
	}
	doc = rc == 0 ? json_incref(resp->body)
	              : http_problem_json(rc, resp, path, "0af7651916cd43dd");
	if (rc != 0 && doc == NULL) {
		fz_fail("%s: no problem+json for %s", what, ms_errname(rc));
	}
	if (doc != NULL) {
		text = http_json_dump(doc, &len);
		if (text == NULL) {
			fz_fail("%s: the answer cannot be written", what);
		}
		free(text);
		json_decref(doc);
	}
}

int
fz_rest(enum http_method method, const char *path, const char *query,
        const char *body, size_t len, json_t **out)
{
	struct http_match m;
	struct http_req req = {0};
	struct http_resp *resp;
	char *pbuf = NULL;
	size_t off = 0;
	int status;
	int rc;

	if (out) {
		*out = NULL;
	}
	rc = http_router_match(env.router, method, path, &m);
	if (rc != 0) {
		return ms_err_http(rc);
	}
	if ((resp = calloc(1, sizeof(*resp))) == NULL) {
		fz_fail("out of memory");
	}
	if (m.nparams > 0) {
		size_t need = 0;

		for (size_t i = 0; i < m.nparams; i++) {
			need += m.param_len[i] + 1;
		}
		if ((pbuf = malloc(need)) == NULL) {
			fz_fail("out of memory");
		}
		for (size_t i = 0; i < m.nparams; i++) {
			memcpy(pbuf + off, path + m.param_off[i],
			       m.param_len[i]);
			pbuf[off + m.param_len[i]] = '\0';
			req.param_names[i] = m.param_names[i];
			req.params[i] = pbuf + off;
			off += m.param_len[i] + 1;
		}
		req.nparams = m.nparams;
	}
	req.method = method;
	req.path = path;
	req.query = query;
	req.body = body;
	req.body_len = len;
	req.trace_id = "0af7651916cd43dd8448eb211c80319c";

	rc = m.fn(m.ctx, &req, resp);
	check_answer(rc, resp, path, m.pattern);
	status = rc == 0 ? resp->status : ms_err_http(rc);
	MS_DEBUG("fuzz", "%s %s: %d %s", http_method_name(method), path,
	         status, rc == 0 ? "" : resp->detail);
	if (rc == 0 && out != NULL) {
		*out = json_incref(resp->body);
	}
	json_decref(resp->body);
	free(resp);
	free(pbuf);
	return status;
}
