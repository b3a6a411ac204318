#!/usr/bin/env bash
# Load and soak tests of `koru-jit serve` on loopback, with the load generator `koru-jit load`
# (closed loop: each connection sends its next request when the previous answer arrives; every
# answer is checked). Prints requests per second and p50/p99 latency for a cached small flow and
# for SPEC 9's nested loop, then the soak: SOAK_REQUESTS (default 1,000,000) requests over
# 10,000 distinct flows through a 512-entry cache, with the server's resident memory and native
# code bytes before the run and after each tenth of it (start, middle and end among them).
#
#     benches/load.sh                      # everything (about 2 minutes on 2 cores)
#     SOAK_REQUESTS=100000 benches/load.sh # a shorter soak
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/koru-jit
ADDRESS=127.0.0.1:${KORU_LOAD_PORT:-8181}
KEY=demo-key-0001
CONNECTIONS=${CONNECTIONS:-4}
SOAK_REQUESTS=${SOAK_REQUESTS:-1000000}
LOG=$(mktemp)

start() {
  : >"$LOG"   # a fresh log: the previous server's "listening on" must not count
  "$BIN" serve --config examples/serve.toml --listen "$ADDRESS" 2>"$LOG" &
  SERVER=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$LOG" && return 0
    sleep 0.05
  done
  echo "the server did not start:"; cat "$LOG"; exit 1
}
stop() {
  kill -TERM "$SERVER"
  wait "$SERVER"
}
trap 'kill -TERM "$SERVER" 2>/dev/null || true' EXIT

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
start
echo "== small cached flow (~add(a: \"10\", b: \"20\")), $CONNECTIONS connections"
"$BIN" load --address "$ADDRESS" --key "$KEY" --workload small --connections "$CONNECTIONS" --requests 5000 >/dev/null # warm-up
"$BIN" load --address "$ADDRESS" --key "$KEY" --workload small --connections "$CONNECTIONS" --requests 200000
echo "== nested loop (100,000 host calls per request), 2 connections"
"$BIN" load --address "$ADDRESS" --key "$KEY" --workload nested --connections 2 --requests 100 >/dev/null # warm-up
"$BIN" load --address "$ADDRESS" --key "$KEY" --workload nested --connections 2 --requests 2000
stop

start
echo "== soak: $SOAK_REQUESTS requests over 10,000 distinct flows, cache of 512 entries, $CONNECTIONS connections"
"$BIN" load --address "$ADDRESS" --key "$KEY" --workload soak --connections "$CONNECTIONS" --requests "$SOAK_REQUESTS"
stop
echo "== server log"; cat "$LOG"
