#!/bin/sh
# SPDX-License-Identifier: MIT
#
# replay.sh TARGET DIR: runs every file of the corpus directory DIR through
# the libFuzzer binary TARGET once, without fuzzing (libFuzzer runs the
# inputs named on its command line and exits), so that the seeds and every
# crash found and fixed (committed under fuzz/corpus/<target>/) stay
# regression tests. Fails on any crash, leak, sanitizer report, oracle abort
# or input slower than 25 s. Used by the 'fuzz' meson test suite.
set -eu
exe=$1
dir=$2
if [ ! -d "$dir" ] || [ -z "$(ls -A "$dir")" ]; then
	echo "replay.sh: no corpus in $dir" >&2
	exit 1
fi
# xargs exits non-zero when any batch failed.
find "$dir" -type f -print0 | sort -z |
	xargs -0 "$exe" -timeout=25 -rss_limit_mb=2048
