/* SPDX-License-Identifier: MIT */
/*
 * Configuration: the INI file, the MONOSHOP_* environment and --set
 * overrides, merged by precedence (--set > environment > file > built-in
 * default) over one static table of known keys (config.c). Every key has a
 * type and a validator, so a wrong value is caught at start-up with the key
 * and where it came from ("dev.ini:12: http.listen: expected HOST:PORT").
 *
 * Threads: built once by main() before any other thread starts, then only
 * read; reads need no locking.
 */
#ifndef MS_CORE_CONFIG_H
#define MS_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct ms_config;

/* ms_config_create allocates a config holding the built-in defaults.
 * Returns 0 or MS_ENOMEM. */
int ms_config_create(struct ms_config **out);

/* ms_config_destroy frees |cfg|; NULL is a no-op. */
void ms_config_destroy(struct ms_config *cfg);

/*
 * ms_config_load_file reads the INI file at |path|: "[section]" headers,
 * "key = value" lines, '#' or ';' comments, blank lines. Values may be
 * double-quoted. Returns 0, MS_EIO (cannot read; |err| says why) or
 * MS_ECONFIG with |err| naming the file, line and key.
 */
int ms_config_load_file(struct ms_config *cfg, const char *path, char *err,
                        size_t errlen);

/*
 * ms_config_load_env applies every MONOSHOP_SECTION_KEY variable of |envp|
 * (NULL-terminated, as environ). MONOSHOP_NODE_DATA_DIR is node.data_dir.
 * An unknown MONOSHOP_* variable is an error like an unknown key.
 * Returns 0 or MS_ECONFIG with |err| naming the variable.
 */
int ms_config_load_env(struct ms_config *cfg, char *const *envp, char *err,
                       size_t errlen);

/*
 * ms_config_set applies one "section.key=value" assignment from |origin|
 * (e.g. "--set"). Returns 0 or MS_ECONFIG with |err| naming the key.
 */
int ms_config_set(struct ms_config *cfg, const char *assignment,
                  const char *origin, char *err, size_t errlen);

/* ms_config_str returns the value of |key| ("http.listen"), or NULL when the
 * key is unset and has no default. |key| must be a known key (asserted). The
 * string lives as long as |cfg|. */
const char *ms_config_str(const struct ms_config *cfg, const char *key);

/* ms_config_int returns an integer (or size, in bytes) key's value. */
int64_t ms_config_int(const struct ms_config *cfg, const char *key);

/* ms_config_bool returns a boolean key's value. */
bool ms_config_bool(const struct ms_config *cfg, const char *key);

/* ms_config_is_set tells whether |key| has a value (default or given). */
bool ms_config_is_set(const struct ms_config *cfg, const char *key);

/*
 * ms_config_has_module tells whether |name| is listed in node.modules.
 */
bool ms_config_has_module(const struct ms_config *cfg, const char *name);

/* ms_config_help writes every key with its type, default and meaning, for
 * --help. */
void ms_config_help(FILE *out);

#endif
