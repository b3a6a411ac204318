#!/usr/bin/env bash
# Load, soak and attack tests of `koru-jit serve` on loopback, with the load generator
# `koru-jit load` (closed loop: each connection sends its next request when the previous answer
# arrives; every answer is checked). Prints requests per second and p50/p99 latency for a cached
# small flow and for SPEC 9's nested loop, then the soak: SOAK_REQUESTS (default 1,000,000)
# requests over 10,000 distinct flows through a 512-entry cache, with the server's resident
# memory and native code bytes before the run and after each tenth of it (start, middle and end
# among them).
#
# Then the attacks of issue 11, each against a fresh server limited to SERVER_MEMORY_MB of
# address space (`ulimit -v`, default 4096: a server that needs more dies, and is reported down),
# each bounded in requests and seconds, each with a probe timing a small flow and /healthz every
# 20 ms meanwhile: compile bombs (12 levels of doubling subflows behind a false `if`, 1,200
# requests from the restricted sandbox key; the loop-triggered variant, 3 requests from the
# public key), output amplification (a 192 MB print.ln from a 62 KB body, 8 clients x 5
# requests) and slow clients (2,000 connections from 127.0.0.2-127.0.0.40 dripping a header line
# a second for 20 s). Each reports whether the server stayed up, its peak resident memory
# (VmHWM) and the small flow's p99.
#
#     benches/load.sh                      # everything (about 3 minutes on 2 cores)
#     SOAK_REQUESTS=100000 benches/load.sh # a shorter soak
#     LOAD=0 benches/load.sh               # the attacks only
#     ATTACKS=0 benches/load.sh            # no attacks
#     KORU_BIN=target/debug/koru-jit ...   # another binary (no release build)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${KORU_BIN:-}" ]; then
  cargo build --release --features cli --quiet
fi
BIN=${KORU_BIN:-target/release/koru-jit}
ADDRESS=127.0.0.1:${KORU_LOAD_PORT:-8181}
KEY=demo-key-0001
SANDBOX_KEY=sandbox-key-0002
CONNECTIONS=${CONNECTIONS:-4}
SOAK_REQUESTS=${SOAK_REQUESTS:-1000000}
SERVER_MEMORY_MB=${SERVER_MEMORY_MB:-4096}
LOG=$(mktemp)
SERVER=

start() {
  : >"$LOG"   # a fresh log: the previous server's "listening on" must not count
  # With an argument: under that address-space limit (KiB).
  if [ -n "${1:-}" ]; then
    (ulimit -v "$1"; exec "$BIN" serve --config examples/serve.toml --listen "$ADDRESS") 2>"$LOG" &
  else
    "$BIN" serve --config examples/serve.toml --listen "$ADDRESS" 2>"$LOG" &
  fi
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
trap 'if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; fi' EXIT

# One attack against a fresh server: name, the attacker's key, then `koru-jit load` options.
attack() {
  local name=$1 key=$2
  shift 2
  start $((SERVER_MEMORY_MB * 1024))
  echo "== attack: $name (key $key, server limited to $SERVER_MEMORY_MB MB of address space)"
  "$BIN" load --address "$ADDRESS" --key "$key" --probe-key "$KEY" --attack "$name" \
    --server-pid "$SERVER" "$@" || true
  if kill -0 "$SERVER" 2>/dev/null; then
    stop || true
  else
    wait "$SERVER" 2>/dev/null && status=0 || status=$?
    echo "  the server died (exit status $status); its last words:"
    grep -v "listening on" "$LOG" | tail -3 | sed 's/^/    /'
  fi
}

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
if [ "${LOAD:-1}" != 0 ]; then
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
fi

if [ "${ATTACKS:-1}" != 0 ]; then
  # Without an attack: the probe's figures and the memory of an idle server, for comparison.
  attack none "$KEY" --observe-seconds 5
  attack compile-bomb "$SANDBOX_KEY" --seconds 60 --observe-seconds 15
  attack compile-bomb-loop "$KEY" --seconds 60 --observe-seconds 15
  attack amplify "$KEY" --seconds 60 --observe-seconds 2
  attack slow-clients "$KEY" --seconds 20 --observe-seconds 1
fi
