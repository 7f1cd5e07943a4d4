#!/bin/sh
# SPDX-License-Identifier: MIT
#
# fuzz/run.sh [SECONDS]: builds the libFuzzer targets (clang, ASan + UBSan,
# in build-fuzz/ beside this folder's parent, or $FUZZ_BUILD), replays every
# committed corpus (meson test --suite fuzz), then fuzzes each target for
# SECONDS (default 20) or FUZZ_RUNS inputs (default 10000; -1: no cap),
# whichever comes first, from seed FUZZ_SEED (default 1; 0: random),
# starting from its corpus (fuzz/corpus/<target>/).
# Fails when any target crashes, leaks, trips an oracle, takes more than 5 s
# on one input or more than 1 GiB: all targets run, the failures are listed
# at the end, each with its input saved under build-fuzz/fuzz-artifacts/
# and the command that replays it.
#
# What the fuzzing finds that is new stays in a temporary directory; to keep
# it, see fuzz/README.md (merging into the corpus). FUZZ_TARGETS="a b"
# limits the run to those targets.
set -eu

secs=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${FUZZ_BUILD:-$root/build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" "$root" -Dfuzz=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fsanitize=fuzzer-no-link
fi
meson compile -C "$build"
meson test -C "$build" --suite fuzz --print-errorlogs

work=$(mktemp -d "${TMPDIR:-/tmp}/monoshop-fuzz-run.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
# The targets' databases and files go under $work, removed at the end.
export TMPDIR="$work"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1

targets=${FUZZ_TARGETS:-$(cd "$build/fuzz" && ls fuzz_* |
	grep -v '\.p$' | sed 's/^fuzz_//' | sort)}
failed=""
for t in $targets; do
	exe="$build/fuzz/fuzz_$t"
	[ -x "$exe" ] || continue
	mkdir -p "$work/corpus-$t"
	rm -f "$artifacts/$t-"*
	dict=""
	case $t in
	rest_* | envelope) dict="-dict=$here/dict/json.dict" ;;
	esac
	printf '%-18s %ss ... ' "$t" "$secs"
	# Belt and braces: libFuzzer's own limits stop a slow input, this
	# stops a target that hangs outside one (start-up, shutdown).
	# A fixed seed and a cap on the inputs by default, so that CI runs
	# the same inputs each time, whatever the machine's speed (new
	# findings come from long local runs: FUZZ_SEED=0 FUZZ_RUNS=-1).
	if timeout -k 10 $((secs + 120)) "$exe" -max_total_time="$secs" \
		-seed="${FUZZ_SEED:-1}" -runs="${FUZZ_RUNS:-10000}" \
		-timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
		-artifact_prefix="$artifacts/$t-" $dict \
		"$work/corpus-$t" "$here/corpus/$t" >"$work/$t.log" 2>&1; then
		grep -E '^stat::number_of_executed_units' "$work/$t.log" |
			sed 's/.*: */ok, runs: /'
	else
		echo "FAILED"
		failed="$failed $t"
		grep -v '^#' "$work/$t.log" | tail -60
		for a in "$artifacts/$t-"*; do
			[ -f "$a" ] && echo "  replay: $exe $a"
		done
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz/run.sh: failed:$failed" >&2
	exit 1
fi
echo "fuzz/run.sh: every target ran (at most ${secs}s each) without a finding"
