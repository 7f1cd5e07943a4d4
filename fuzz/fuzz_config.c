/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the INI configuration file (ms_config_load_file), as
 * `monoshop --config FILE` reads it: the input is written to a file in a
 * temporary directory made once, then loaded into a fresh configuration.
 *
 * Oracles, beyond the sanitizers: the answer is 0, MS_ECONFIG or MS_EIO
 * (MS_ENOMEM aside); a failure says why in a NUL-terminated message that
 * fits its buffer; a file that loads leaves every typed key readable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/err.h"
#include "fuzz_env.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];
static char path[300];

static void
cleanup(void)
{
	remove(path);
	remove(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet();
	if (fz_tmpdir(dir, sizeof(dir)) != 0) {
		fz_fail("cannot make a temporary directory");
	}
	snprintf(path, sizeof(path), "%s/fuzz.ini", dir);
	atexit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ms_config *cfg;
	char err[512];
	FILE *f = fopen(path, "wb");
	int rc;

	if (f == NULL) {
		fz_fail("cannot write %s", path);
	}
	if (size > 0 && fwrite(data, 1, size, f) != size) {
		fz_fail("cannot write %s", path);
	}
	fclose(f);
	if (ms_config_create(&cfg) != 0) {
		return 0;
	}
	memset(err, 'x', sizeof(err));
	rc = ms_config_load_file(cfg, path, err, sizeof(err));
	if (rc == 0) {
		/* Every kind of key reads back. */
		(void)ms_config_str(cfg, "http.listen");
		(void)ms_config_int(cfg, "http.max_body");
		(void)ms_config_bool(cfg, "debug.hold_events");
		(void)ms_config_has_module(cfg, "basket");
		if (ms_config_is_set(cfg, "events.broker") &&
		    ms_config_str(cfg, "events.broker") == NULL) {
			fz_fail("events.broker is set but has no value");
		}
	} else if (rc == MS_ECONFIG || rc == MS_EIO) {
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0') {
			fz_fail("%s without a message", ms_errname(rc));
		}
	} else if (rc != MS_ENOMEM) {
		fz_fail("ms_config_load_file: unexpected %s", ms_errname(rc));
	}
	ms_config_destroy(cfg);
	return 0;
}
