#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/run.sh: the benchmark harness in one command (bench/README.md).
# Builds monoshop and the bench programs in release mode (build-bench/, or
# $BENCH_BUILD), then runs every scenario on loopback with bench/bench.py
# and prints the table; extra arguments go to bench.py (--rounds N,
# --only 1,2,..., --quick). The table is also written to
# $BENCH_BUILD/bench-results.md, the raw samples to bench-results.json.
set -eu

cd "$(dirname "$0")/.."
BUILD=${BENCH_BUILD:-build-bench}

echo "Needs (Debian 12, as root):"
echo "  apt-get update && apt-get install -y meson ninja-build pkg-config gcc g++ cmake python3 libsqlite3-dev libmicrohttpd-dev libjansson-dev libprotobuf-c-dev protobuf-c-compiler libnghttp2-dev librabbitmq-dev libnng-dev check nghttp2-client wrk libgrpc++-dev protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf python3-pika rabbitmq-server"
echo

for tool in meson ninja h2load wrk; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench/run.sh: $tool not found: run the apt-get line above" >&2
		exit 1
	fi
done

if [ -d "$BUILD" ]; then
	meson configure "$BUILD" -Dbench=true -Dbuildtype=release >/dev/null
else
	meson setup "$BUILD" -Dbench=true -Dtests=false --buildtype=release
fi
meson compile -C "$BUILD"

# Debian's python3 (python3-pika for the broker launcher, python3-grpcio for
# the status check), whatever python3 comes first on PATH.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" bench/bench.py --build "$BUILD" \
	--out "$BUILD/bench-results.md" --json "$BUILD/bench-results.json" "$@"
