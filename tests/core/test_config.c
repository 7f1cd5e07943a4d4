/* SPDX-License-Identifier: MIT */
/*
 * Tests of the configuration (config.h / config.c): built-in defaults, INI
 * parsing, every kind of error naming its source and key, the environment
 * mapping, --set, precedence whatever the order of loading, the validator
 * of each value type, and the shipped config/dev.ini and
 * config/split/{basket,discount,ordering}.ini.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/err.h"

#ifndef MS_SOURCE_ROOT
#error "MS_SOURCE_ROOT must name the source tree (tests/core/meson.build)"
#endif

/* Every key of the contract with its default in normal form (NULL =
 * unset). */
static const struct {
	const char *key;
	const char *def;
} known_keys[] = {
    {"node.modules", "basket discount ordering"},
    {"node.data_dir", "data"},
    {"node.shutdown_timeout_ms", "10000"},
    {"log.level", "info"},
    {"http.listen", "127.0.0.1:8080"},
    {"http.max_body", "1048576"},
    {"http.threads", "4"},
    {"http.max_connections", "1024"},
    {"http.connection_timeout_s", "30"},
    {"http.max_header_size", "32768"},
    {"http.max_json_depth", "32"},
    {"http.api_key", NULL},
    {"grpc.listen", "127.0.0.1:8081"},
    {"grpc.max_message", "4194304"},
    {"grpc.idle_timeout_s", "300"},
    {"grpc.request_timeout_s", "30"},
    {"grpc.api_key", NULL},
    {"grpc.tls_cert", NULL},
    {"grpc.tls_key", NULL},
    {"grpc.tls_ca", NULL},
    {"remote.discount", NULL},
    {"remote.basket", NULL},
    {"remote.ordering", NULL},
    {"events.broker", NULL},
    {"events.relay_batch", "64"},
    {"events.relay_poll_ms", "1000"},
    {"events.max_redeliveries", "5"},
    {"nng.listen", NULL},
    {"bus.call_timeout_ms", "5000"},
    {"store.synchronous", "normal"},
    {"store.busy_timeout_ms", "5000"},
    {"debug.hold_events", "false"},
};

static char tmpdir[256];

static void
setup(void)
{
	const char *dir = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/mscfgXXXXXX",
	         dir != NULL ? dir : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/dev.ini", tmpdir);
	unlink(path);
	rmdir(tmpdir);
}

/* write_ini writes |text| to <tmpdir>/dev.ini and returns the path. */
static const char *
write_ini(const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/dev.ini", tmpdir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

static struct ms_config *
new_config(void)
{
	struct ms_config *cfg = NULL;

	ck_assert_int_eq(ms_config_create(&cfg), 0);
	ck_assert_ptr_nonnull(cfg);
	return cfg;
}

/* load_err loads |text| expecting MS_ECONFIG and an error containing each
 * of the NULL-terminated |needles|. */
static void
load_err(const char *text, ...)
{
	struct ms_config *cfg = new_config();
	const char *path = write_ini(text);
	char err[512] = "";
	const char *needle;
	va_list ap;

	ck_assert_int_eq(ms_config_load_file(cfg, path, err, sizeof(err)),
	                 MS_ECONFIG);
	va_start(ap, text);
	while ((needle = va_arg(ap, const char *)) != NULL) {
		ck_assert_msg(strstr(err, needle) != NULL,
		              "error '%s' lacks '%s'", err, needle);
	}
	va_end(ap);
	ck_assert_msg(strstr(err, path) != NULL, "error '%s' lacks the file",
	              err);
	ms_config_destroy(cfg);
}

START_TEST(defaults)
{
	struct ms_config *cfg = new_config();

	for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]);
	     i++) {
		const char *v = ms_config_str(cfg, known_keys[i].key);
		if (known_keys[i].def == NULL) {
			ck_assert_msg(v == NULL, "%s", known_keys[i].key);
			ck_assert(!ms_config_is_set(cfg, known_keys[i].key));
		} else {
			ck_assert_msg(v != NULL, "%s", known_keys[i].key);
			ck_assert_str_eq(v, known_keys[i].def);
			ck_assert(ms_config_is_set(cfg, known_keys[i].key));
		}
	}
	ck_assert_int_eq(ms_config_int(cfg, "http.max_body"), 1048576);
	ck_assert_int_eq(ms_config_int(cfg, "grpc.max_message"), 4 << 20);
	ck_assert_int_eq(ms_config_int(cfg, "http.threads"), 4);
	ck_assert_int_eq(ms_config_int(cfg, "bus.call_timeout_ms"), 5000);
	ck_assert(!ms_config_bool(cfg, "debug.hold_events"));
	ck_assert(ms_config_has_module(cfg, "basket"));
	ck_assert(ms_config_has_module(cfg, "discount"));
	ck_assert(ms_config_has_module(cfg, "ordering"));
	ck_assert(!ms_config_has_module(cfg, "catalog"));
	ck_assert(!ms_config_has_module(cfg, "bask"));
	ms_config_destroy(cfg);
	ms_config_destroy(NULL);
}
END_TEST

START_TEST(file_parsing)
{
	struct ms_config *cfg = new_config();
	char err[256];
	const char *path = write_ini("\xef\xbb\xbf# a comment\n"
	                             "; another comment\n"
	                             "\n"
	                             "[node]\n"
	                             "  modules =   ordering,basket  \n"
	                             "data_dir = \"/var/lib/my shop\"\n"
	                             "\t[ http ]\t\n"
	                             "listen=0.0.0.0:0\r\n"
	                             "max_body = 2K\n"
	                             "threads = \"8\"\n"
	                             "[remote]\n"
	                             "discount = grpc://10.0.0.2:6002\n"
	                             "[debug]\n"
	                             "hold_events = yes\n"
	                             "[log]\n"
	                             "level = DEBUG"); /* no final newline */

	ck_assert_int_eq(ms_config_load_file(cfg, path, err, sizeof(err)), 0);
	ck_assert_str_eq(ms_config_str(cfg, "node.modules"), "ordering basket");
	ck_assert(ms_config_has_module(cfg, "basket"));
	ck_assert(!ms_config_has_module(cfg, "discount"));
	ck_assert_str_eq(ms_config_str(cfg, "node.data_dir"),
	                 "/var/lib/my shop");
	ck_assert_str_eq(ms_config_str(cfg, "http.listen"), "0.0.0.0:0");
	ck_assert_int_eq(ms_config_int(cfg, "http.max_body"), 2048);
	ck_assert_str_eq(ms_config_str(cfg, "http.max_body"), "2048");
	ck_assert_int_eq(ms_config_int(cfg, "http.threads"), 8);
	ck_assert_str_eq(ms_config_str(cfg, "remote.discount"),
	                 "grpc://10.0.0.2:6002");
	ck_assert(ms_config_is_set(cfg, "remote.discount"));
	ck_assert(ms_config_bool(cfg, "debug.hold_events"));
	ck_assert_str_eq(ms_config_str(cfg, "debug.hold_events"), "true");
	ck_assert_str_eq(ms_config_str(cfg, "log.level"), "debug");
	/* Untouched keys keep their defaults. */
	ck_assert_str_eq(ms_config_str(cfg, "grpc.listen"), "127.0.0.1:8081");
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(file_errors)
{
	load_err("[node]\n\n[nope]\n", ":3:", "unknown section", "nope", NULL);
	load_err("[http]\nlisten = 1.2.3.4:5\nlisen = x\n",
	         ":3:", "unknown key", "http.lisen", NULL);
	load_err("# header\nthreads = 4\n", ":2:", "threads",
	         "outside any [section]", NULL);
	load_err("[http]\nthreads 4\n", ":2:", "malformed line", NULL);
	load_err("[http]\n= 4\n", ":2:", "malformed line", NULL);
	load_err("[http\n", ":1:", "malformed section", NULL);
	load_err("[]\n", ":1:", "malformed section", NULL);
	load_err("[node]\nmodules = basket\n\n\n[http]\nlisten = abc\n",
	         "dev.ini:6: http.listen: expected HOST:PORT", "got 'abc'",
	         NULL);
	load_err("[http]\nthreads = \"4\n", ":2:", "http.threads",
	         "unbalanced double quote", NULL);
	load_err("[http]\nthreads = 0\n", ":2: http.threads:", "from 1 to 256",
	         "got '0'", NULL);
	/* Inline comments are not comments: the value is then wrong. */
	load_err("[http]\nthreads = 4 # four\n",
	         ":2: http.threads:", "got '4 # four'", NULL);
}
END_TEST

START_TEST(file_long_line)
{
	char *text = malloc(10000);

	ck_assert_ptr_nonnull(text);
	strcpy(text, "[node]\ndata_dir = ");
	memset(text + strlen(text), 'd', 6000);
	strcpy(text + 18 + 6000, "\n");
	load_err(text, ":2:", "line longer", NULL);
	free(text);
}
END_TEST

START_TEST(file_missing)
{
	struct ms_config *cfg = new_config();
	char err[256] = "";
	char path[512];

	snprintf(path, sizeof(path), "%s/absent.ini", tmpdir);
	ck_assert_int_eq(ms_config_load_file(cfg, path, err, sizeof(err)),
	                 MS_EIO);
	ck_assert_ptr_nonnull(strstr(err, "absent.ini"));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(env_mapping)
{
	struct ms_config *cfg = new_config();
	char err[256] = "";
	char *const envp[] = {
	    "PATH=/usr/bin",
	    "MONOSHOPX=ignored",
	    "MONOSHOP_NODE_DATA_DIR=/srv/data",
	    "MONOSHOP_HTTP_MAX_BODY=2M",
	    "MONOSHOP_EVENTS_BROKER=amqp://guest:guest@127.0.0.1:5672/",
	    "MONOSHOP_STORE_SYNCHRONOUS=full",
	    "NOEQUALS",
	    NULL,
	};

	ck_assert_int_eq(ms_config_load_env(cfg, envp, err, sizeof(err)), 0);
	ck_assert_str_eq(ms_config_str(cfg, "node.data_dir"), "/srv/data");
	ck_assert_int_eq(ms_config_int(cfg, "http.max_body"), 2 << 20);
	ck_assert_str_eq(ms_config_str(cfg, "events.broker"),
	                 "amqp://guest:guest@127.0.0.1:5672/");
	ck_assert_str_eq(ms_config_str(cfg, "store.synchronous"), "full");
	ck_assert_int_eq(ms_config_load_env(cfg, NULL, err, sizeof(err)), 0);
	ms_config_destroy(cfg);
}
END_TEST

static void
env_err(const char *var, const char *needle1, const char *needle2)
{
	struct ms_config *cfg = new_config();
	char err[256] = "";
	char *const envp[] = {(char *)var, NULL};

	ck_assert_int_eq(ms_config_load_env(cfg, envp, err, sizeof(err)),
	                 MS_ECONFIG);
	ck_assert_msg(strstr(err, needle1) != NULL, "'%s' lacks '%s'", err,
	              needle1);
	ck_assert_msg(strstr(err, needle2) != NULL, "'%s' lacks '%s'", err,
	              needle2);
	ms_config_destroy(cfg);
}

START_TEST(env_errors)
{
	env_err("MONOSHOP_HTTP_LISTEN=abc",
	        "MONOSHOP_HTTP_LISTEN: http.listen:", "expected HOST:PORT");
	env_err("MONOSHOP_HTTP_NOPE=1", "MONOSHOP_HTTP_NOPE", "unknown");
	env_err("MONOSHOP_NOPE_KEY=1", "MONOSHOP_NOPE_KEY", "unknown");
	env_err("MONOSHOP_=1", "MONOSHOP_", "unknown");
	env_err("MONOSHOP_NODE=1", "MONOSHOP_NODE", "unknown");
	env_err("MONOSHOP_HTTP_THREADS=lots", "MONOSHOP_HTTP_THREADS",
	        "http.threads");
}
END_TEST

START_TEST(set_assignments)
{
	struct ms_config *cfg = new_config();
	char err[256] = "";

	ck_assert_int_eq(
	    ms_config_set(cfg, "http.threads=16", "--set", err, sizeof(err)),
	    0);
	ck_assert_int_eq(ms_config_int(cfg, "http.threads"), 16);
	ck_assert_int_eq(
	    ms_config_set(cfg, " log.level = warn ", NULL, err, sizeof(err)),
	    0);
	ck_assert_str_eq(ms_config_str(cfg, "log.level"), "warn");
	ck_assert_int_eq(
	    ms_config_set(cfg, "node.data_dir=a=b", "--set", err, sizeof(err)),
	    0);
	ck_assert_str_eq(ms_config_str(cfg, "node.data_dir"), "a=b");

	ck_assert_int_eq(
	    ms_config_set(cfg, "http.threads", "--set", err, sizeof(err)),
	    MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "--set"));
	ck_assert_ptr_nonnull(strstr(err, "section.key=value"));
	ck_assert_int_eq(
	    ms_config_set(cfg, "http.nope=1", "--set", err, sizeof(err)),
	    MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "--set: unknown key http.nope"));
	ck_assert_int_eq(
	    ms_config_set(cfg, "threads=1", "--set", err, sizeof(err)),
	    MS_ECONFIG);
	ck_assert_int_eq(
	    ms_config_set(cfg, "http.threads=999", "--set", err, sizeof(err)),
	    MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "--set: http.threads:"));
	ck_assert_ptr_nonnull(strstr(err, "got '999'"));
	/* A failed assignment leaves the value alone. */
	ck_assert_int_eq(ms_config_int(cfg, "http.threads"), 16);
	ms_config_destroy(cfg);
}
END_TEST

/* Precedence: each source sets http.threads (and the file and env also
 * node.data_dir); --set > env > file whatever the order of the calls. */
START_TEST(precedence_any_order)
{
	static const int orders[6][3] = {
	    {0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0},
	};
	char *const envp[] = {"MONOSHOP_HTTP_THREADS=20",
	                      "MONOSHOP_NODE_DATA_DIR=from-env", NULL};
	const char *path = write_ini("[http]\nthreads = 10\nmax_connections = "
	                             "7\n[node]\ndata_dir = from-file\n");

	for (int o = 0; o < 6; o++) {
		struct ms_config *cfg = new_config();
		char err[256];

		for (int k = 0; k < 3; k++) {
			switch (orders[o][k]) {
			case 0:
				ck_assert_int_eq(
				    ms_config_load_file(cfg, path, err,
				                        sizeof(err)),
				    0);
				break;
			case 1:
				ck_assert_int_eq(
				    ms_config_load_env(cfg, envp, err,
				                       sizeof(err)),
				    0);
				break;
			default:
				ck_assert_int_eq(
				    ms_config_set(cfg, "http.threads=30",
				                  "--set", err, sizeof(err)),
				    0);
				break;
			}
		}
		ck_assert_msg(ms_config_int(cfg, "http.threads") == 30,
		              "order %d", o);
		ck_assert_str_eq(ms_config_str(cfg, "node.data_dir"),
		                 "from-env");
		ck_assert_int_eq(ms_config_int(cfg, "http.max_connections"), 7);
		ms_config_destroy(cfg);
	}
}
END_TEST

START_TEST(precedence_same_rank_last_wins)
{
	struct ms_config *cfg = new_config();
	char err[256];

	ck_assert_int_eq(
	    ms_config_set(cfg, "http.threads=5", "--set", err, sizeof(err)), 0);
	ck_assert_int_eq(
	    ms_config_set(cfg, "http.threads=6", "--set", err, sizeof(err)), 0);
	ck_assert_int_eq(ms_config_int(cfg, "http.threads"), 6);
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(overridden_value_still_validated)
{
	struct ms_config *cfg = new_config();
	const char *path = write_ini("[http]\nthreads = many\n");
	char err[256];

	ck_assert_int_eq(
	    ms_config_set(cfg, "http.threads=5", "--set", err, sizeof(err)), 0);
	ck_assert_int_eq(ms_config_load_file(cfg, path, err, sizeof(err)),
	                 MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "http.threads"));
	ck_assert_int_eq(ms_config_int(cfg, "http.threads"), 5);
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(empty_url_unsets)
{
	struct ms_config *cfg = new_config();
	const char *path =
	    write_ini("[remote]\ndiscount = nng+ipc:///tmp/d.ipc\n");
	char err[256];

	ck_assert_int_eq(ms_config_load_file(cfg, path, err, sizeof(err)), 0);
	ck_assert(ms_config_is_set(cfg, "remote.discount"));
	ck_assert_int_eq(
	    ms_config_set(cfg, "remote.discount=", "--set", err, sizeof(err)),
	    0);
	ck_assert(!ms_config_is_set(cfg, "remote.discount"));
	ck_assert_ptr_null(ms_config_str(cfg, "remote.discount"));
	/* ... and the file, of a lower rank, can not set it back. */
	ck_assert_int_eq(ms_config_load_file(cfg, path, err, sizeof(err)), 0);
	ck_assert(!ms_config_is_set(cfg, "remote.discount"));
	ms_config_destroy(cfg);
}
END_TEST

struct vcase {
	const char *key;
	const char *value;
	const char *normal; /* NULL: rejected, "" + unset: see below */
};

/* Accepted values with their normal form, and rejected ones (NULL). */
static const struct vcase vcases[] = {
    /* int */
    {"http.threads", "1", "1"},
    {"http.threads", "256", "256"},
    {"http.threads", "007", "7"},
    {"http.threads", "0", NULL},
    {"http.threads", "257", NULL},
    {"http.threads", "-1", NULL},
    {"http.threads", "4.0", NULL},
    {"http.threads", "", NULL},
    {"http.threads", "0x10", NULL},
    {"http.threads", "99999999999999999999999", NULL},
    {"node.shutdown_timeout_ms", "0", "0"},
    {"node.shutdown_timeout_ms", "600000", "600000"},
    {"node.shutdown_timeout_ms", "600001", NULL},
    {"events.relay_poll_ms", "9", NULL},
    {"events.max_redeliveries", "0", "0"},
    {"events.max_redeliveries", "101", NULL},
    /* size */
    {"http.max_body", "1024", "1024"},
    {"http.max_body", "1K", "1024"},
    {"http.max_body", "1k", "1024"},
    {"http.max_body", "64M", "67108864"},
    {"http.max_body", "3m", "3145728"},
    {"http.max_body", "1023", NULL},
    {"http.max_body", "65M", NULL},
    {"http.max_body", "1G", NULL},
    {"http.max_body", "1MB", NULL},
    {"http.max_body", "-1K", NULL},
    {"http.max_body", "K", NULL},
    {"http.max_body", "9999999999999999999G", NULL},
    {"http.max_body", "99999999999G", NULL},
    {"grpc.max_message", "16M", "16777216"},
    /* bool */
    {"debug.hold_events", "true", "true"},
    {"debug.hold_events", "YES", "true"},
    {"debug.hold_events", "on", "true"},
    {"debug.hold_events", "1", "true"},
    {"debug.hold_events", "false", "false"},
    {"debug.hold_events", "No", "false"},
    {"debug.hold_events", "off", "false"},
    {"debug.hold_events", "0", "false"},
    {"debug.hold_events", "2", NULL},
    {"debug.hold_events", "", NULL},
    {"debug.hold_events", "truth", NULL},
    /* enum */
    {"log.level", "error", "error"},
    {"log.level", "Warn", "warn"},
    {"log.level", "verbose", NULL},
    {"log.level", "", NULL},
    {"log.level", "info ", "info"}, /* trimmed by --set */
    {"store.synchronous", "full", "full"},
    {"store.synchronous", "off", NULL},
    /* hostport */
    {"http.listen", "127.0.0.1:8080", "127.0.0.1:8080"},
    {"http.listen", "localhost:0", "localhost:0"},
    {"http.listen", "0.0.0.0:65535", "0.0.0.0:65535"},
    {"http.listen", "[::1]:80", "[::1]:80"},
    {"http.listen", "[::]:0", "[::]:0"},
    {"http.listen", "abc", NULL},
    {"http.listen", ":8080", NULL},
    {"http.listen", "host:", NULL},
    {"http.listen", "host:65536", NULL},
    {"http.listen", "host:-1", NULL},
    {"http.listen", "host:80a", NULL},
    {"http.listen", "::1:80", NULL},
    {"http.listen", "[]:80", NULL},
    {"http.listen", "[::1]80", NULL},
    {"http.listen", "[::1:80", NULL},
    {"http.listen", "ho st:80", NULL},
    {"http.listen", "host:000080", NULL},
    {"grpc.listen", "127.0.0.1:6002", "127.0.0.1:6002"},
    /* modules */
    {"node.modules", "basket", "basket"},
    {"node.modules", "ordering, discount", "ordering discount"},
    {"node.modules", "basket,discount,ordering", "basket discount ordering"},
    {"node.modules", " ,basket\t discount,, ", "basket discount"},
    {"node.modules", "", NULL},
    {"node.modules", " , ", NULL},
    {"node.modules", "catalog", NULL},
    {"node.modules", "basket basket", NULL},
    {"node.modules", "Basket", NULL},
    {"node.modules", "basketdiscount", NULL},
    /* remote url */
    {"remote.discount", "grpc://127.0.0.1:6002", "grpc://127.0.0.1:6002"},
    {"remote.discount", "nng+tcp://host:7000", "nng+tcp://host:7000"},
    {"remote.discount", "nng+ipc:///tmp/d.ipc", "nng+ipc:///tmp/d.ipc"},
    {"remote.discount", "grpc://[::1]:6002", "grpc://[::1]:6002"},
    {"remote.discount", "http://127.0.0.1:6002", NULL},
    {"remote.discount", "amqp://guest@h/", NULL},
    {"remote.discount", "grpc://", NULL},
    {"remote.discount", "grpc://host", NULL},
    {"remote.discount", "grpc://host:0", NULL},
    {"remote.discount", "nng+ipc://", NULL},
    {"remote.discount", "nng+ipc://relative", NULL},
    {"remote.discount", "grpc://host:1 x", NULL},
    {"remote.basket", "tcp://host:1", NULL},
    {"remote.ordering", "grpc://o:6003", "grpc://o:6003"},
    {"remote.discount", "grpcs://d.example:443", "grpcs://d.example:443"},
    {"remote.discount", "grpcs://", NULL},
    {"remote.discount", "grpcs://host", NULL},
    /* limits (issue 8) */
    {"http.max_header_size", "4K", "4096"},
    {"http.max_header_size", "1M", "1048576"},
    {"http.max_header_size", "4095", NULL},
    {"http.max_header_size", "2M", NULL},
    {"http.max_json_depth", "1", "1"},
    {"http.max_json_depth", "1024", "1024"},
    {"http.max_json_depth", "0", NULL},
    {"http.max_json_depth", "1025", NULL},
    {"grpc.idle_timeout_s", "0", "0"},
    {"grpc.request_timeout_s", "0", NULL},
    /* secret: 16..256 printable ASCII, no space */
    {"http.api_key", "0123456789abcdef", "0123456789abcdef"},
    {"grpc.api_key", "a-B_c.d~e!f@g#h$i%j^k&l*m(n)o+p=q",
     "a-B_c.d~e!f@g#h$i%j^k&l*m(n)o+p=q"},
    {"http.api_key", "0123456789abcde", NULL},
    {"http.api_key", "0123456789 abcdef", NULL},
    {"http.api_key", "0123456789abcdef\x7f", NULL},
    {"grpc.api_key", "0123456789abcdé", NULL},
    {"grpc.api_key", "", NULL},
    /* broker url */
    {"events.broker", "amqp://guest:guest@127.0.0.1:5672/",
     "amqp://guest:guest@127.0.0.1:5672/"},
    {"events.broker", "nng+tcp://127.0.0.1:7001", "nng+tcp://127.0.0.1:7001"},
    {"events.broker", "nng+ipc:///run/o.ipc", "nng+ipc:///run/o.ipc"},
    {"events.broker", "amqp://", NULL},
    {"events.broker", "grpc://h:1", NULL},
    {"events.broker", "rabbitmq://h", NULL},
    /* nng url */
    {"nng.listen", "tcp://127.0.0.1:7000", "tcp://127.0.0.1:7000"},
    {"nng.listen", "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"},
    {"nng.listen", "ipc:///tmp/x.ipc", "ipc:///tmp/x.ipc"},
    {"nng.listen", "nng+tcp://127.0.0.1:7000", NULL},
    {"nng.listen", "tcp://nohost", NULL},
    {"nng.listen", "ipc://", NULL},
    /* string */
    {"node.data_dir", "/var/lib/monoshop", "/var/lib/monoshop"},
    {"node.data_dir", "", NULL},
    {"node.data_dir",
     "a\x01"
     "b",
     NULL},
};

START_TEST(validators)
{
	const struct vcase *c = &vcases[_i];
	struct ms_config *cfg = new_config();
	char assignment[256], err[256] = "";
	int rc;

	snprintf(assignment, sizeof(assignment), "%s=%s", c->key, c->value);
	rc = ms_config_set(cfg, assignment, "--set", err, sizeof(err));
	if (c->normal == NULL) {
		ck_assert_msg(rc == MS_ECONFIG, "%s accepted", assignment);
		ck_assert_msg(strstr(err, c->key) != NULL, "'%s' lacks key",
		              err);
		ck_assert_msg(strstr(err, "--set") != NULL, "'%s'", err);
	} else {
		ck_assert_msg(rc == 0, "%s rejected: %s", assignment, err);
		ck_assert_str_eq(ms_config_str(cfg, c->key), c->normal);
	}
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(too_long_value)
{
	struct ms_config *cfg = new_config();
	char *a = malloc(3000);
	char err[256];

	ck_assert_ptr_nonnull(a);
	strcpy(a, "node.data_dir=");
	memset(a + 14, 'x', 2000);
	a[2014] = '\0';
	ck_assert_int_eq(ms_config_set(cfg, a, "--set", err, sizeof(err)),
	                 MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "longer"));
	/* The quoted value in the message is cut, the message bounded. */
	ck_assert_uint_lt(strlen(err), 255);
	free(a);
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(error_buffer_optional)
{
	struct ms_config *cfg = new_config();

	ck_assert_int_eq(ms_config_set(cfg, "http.nope=1", "--set", NULL, 0),
	                 MS_ECONFIG);
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(shipped_dev_ini)
{
	struct ms_config *cfg = new_config();
	char err[512] = "";

	ck_assert_msg(ms_config_load_file(cfg, MS_SOURCE_ROOT "/config/dev.ini",
	                                  err, sizeof(err)) == 0,
	              "%s", err);
	/* dev.ini documents the defaults: loading it changes nothing. */
	for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]);
	     i++) {
		const char *v = ms_config_str(cfg, known_keys[i].key);
		if (known_keys[i].def == NULL) {
			ck_assert_msg(v == NULL, "%s", known_keys[i].key);
		} else {
			ck_assert_msg(
			    v != NULL && strcmp(v, known_keys[i].def) == 0,
			    "%s = %s", known_keys[i].key, v ? v : "(unset)");
		}
	}
	ms_config_destroy(cfg);
}
END_TEST

/* config/split/{basket,discount,ordering}.ini (SPEC §1): each loads
 * without error and says what the deployment needs. */
static const struct {
	const char *file;
	const char *modules;
	const char *http;
	const char *grpc;
	const char *remote_discount; /* NULL: unset */
	const char *broker;          /* NULL: unset */
	const char *data_dir;
} split_files[] = {
    {"basket.ini", "basket", "127.0.0.1:6001", "127.0.0.1:6011",
     "grpc://127.0.0.1:6002", "amqp://guest:guest@127.0.0.1:5672/",
     "data/basket"},
    {"discount.ini", "discount", "127.0.0.1:6012", "127.0.0.1:6002", NULL, NULL,
     "data/discount"},
    {"ordering.ini", "ordering", "127.0.0.1:6003", "127.0.0.1:6013", NULL,
     "amqp://guest:guest@127.0.0.1:5672/", "data/ordering"},
};

static void
assert_key(struct ms_config *cfg, const char *key, const char *want)
{
	if (want == NULL) {
		ck_assert_msg(!ms_config_is_set(cfg, key), "%s is set", key);
	} else {
		ck_assert_msg(ms_config_is_set(cfg, key), "%s is unset", key);
		ck_assert_str_eq(ms_config_str(cfg, key), want);
	}
}

START_TEST(shipped_split_ini)
{
	struct ms_config *cfg = new_config();
	char path[512];
	char err[512] = "";

	snprintf(path, sizeof(path), "%s/config/split/%s", MS_SOURCE_ROOT,
	         split_files[_i].file);
	ck_assert_msg(ms_config_load_file(cfg, path, err, sizeof(err)) == 0,
	              "%s: %s", path, err);
	assert_key(cfg, "node.modules", split_files[_i].modules);
	assert_key(cfg, "http.listen", split_files[_i].http);
	assert_key(cfg, "grpc.listen", split_files[_i].grpc);
	assert_key(cfg, "remote.discount", split_files[_i].remote_discount);
	assert_key(cfg, "events.broker", split_files[_i].broker);
	assert_key(cfg, "node.data_dir", split_files[_i].data_dir);
	ms_config_destroy(cfg);
}
END_TEST

/* A rejected access key is named, never quoted: config errors are printed
 * and logged. */
START_TEST(secret_not_echoed)
{
	struct ms_config *cfg = new_config();
	char err[256] = "";
	char path[512];
	FILE *f;

	ck_assert_int_eq(ms_config_set(cfg, "http.api_key=hunter2 hunter2",
	                               "--set", err, sizeof(err)),
	                 MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "http.api_key"));
	ck_assert_ptr_null(strstr(err, "hunter2"));
	snprintf(path, sizeof(path), "%s/dev.ini", tmpdir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("[grpc]\napi_key = short\n", f);
	fclose(f);
	ck_assert_int_eq(ms_config_load_file(cfg, path, err, sizeof(err)),
	                 MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "grpc.api_key"));
	ck_assert_ptr_nonnull(strstr(err, ":2:"));
	ck_assert_ptr_null(strstr(err, "short"));
	/* --help shows the type, never a value (none is built in). */
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(help_lists_every_key)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	ms_config_help(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]);
	     i++) {
		ck_assert_msg(strstr(text, known_keys[i].key) != NULL, "%s",
		              known_keys[i].key);
	}
	ck_assert_ptr_nonnull(strstr(text, "127.0.0.1:8080"));
	ck_assert_ptr_nonnull(strstr(text, "1K..64M"));
	ck_assert_ptr_nonnull(strstr(text, "debug|info|warn|error"));
	free(text);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("core_config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, file_parsing);
	tcase_add_test(tc, file_errors);
	tcase_add_test(tc, file_long_line);
	tcase_add_test(tc, file_missing);
	tcase_add_test(tc, env_mapping);
	tcase_add_test(tc, env_errors);
	tcase_add_test(tc, set_assignments);
	tcase_add_test(tc, precedence_any_order);
	tcase_add_test(tc, precedence_same_rank_last_wins);
	tcase_add_test(tc, overridden_value_still_validated);
	tcase_add_test(tc, empty_url_unsets);
	tcase_add_loop_test(tc, validators, 0,
	                    sizeof(vcases) / sizeof(vcases[0]));
	tcase_add_test(tc, too_long_value);
	tcase_add_test(tc, error_buffer_optional);
	tcase_add_test(tc, shipped_dev_ini);
	tcase_add_loop_test(tc, shipped_split_ini, 0,
	                    sizeof(split_files) / sizeof(split_files[0]));
	tcase_add_test(tc, secret_not_echoed);
	tcase_add_test(tc, help_lists_every_key);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
