#!/usr/bin/env bash
# Where tocsin's time goes under the bench load (see docs/benchmarks.md, "Where the time goes").
#
# For the single-event and the batch scenario, separately:
#   1. strace -w -c (wall time) of the durable-write syscalls (fdatasync/fsync, pwrite64) for 5 s: how many
#      commits per second the group commit makes and how long each fsync blocks the writer;
#   2. perf record (call graphs) of the whole process for 5 s: where CPU goes.
# Needs target/release binaries (scripts/bench.sh builds them), strace and perf. Loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${TOCSIN_PORT:-19750}
OUT=${OUT:-$(mktemp -d /tmp/tocsin-profile.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/tocsin-profile-data.XXXXXX")
LOADGEN="$ROOT/target/release/tocsin-loadgen"
TPID=""
cleanup() {
  if [[ -n "$TPID" ]]; then kill "$TPID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
max_body_bytes = 4194304
[store]
url = "sqlite://$WORK/tocsin.db"
[log]
level = "warn"
[[api_keys]]
name = "bench"
key = "bench-key"
scopes = ["events:write", "events:read"]
[notifiers.hook]
type = "webhook"
url = "http://127.0.0.1:19901/hook"
[[routes]]
kinds = ["bench.latency"]
notifier = "hook"
group_wait = "0s"
EOF
"$ROOT/target/release/tocsin" serve --config "$WORK/tocsin.toml" >"$OUT/tocsin.log" 2>&1 &
TPID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break; sleep 0.1; done

for mode in ${MODES:-single batch}; do
  args=(--url "http://127.0.0.1:$PORT" --server-pid "$TPID" --connections 64 --duration 9s --mode "$mode" --batch 100)
  echo "== $mode: strace -c (5 s)"
  "$LOADGEN" "${args[@]}" --label "$mode-strace" >"$OUT/$mode-strace.load" &
  lg=$!
  sleep 2
  timeout -s INT 5 strace -f -w -c --seccomp-bpf -e trace=fdatasync,fsync,pwrite64,pread64 -p "$TPID" -o "$OUT/$mode-strace.txt" || true
  wait "$lg"
  grep -v '^RESULT' "$OUT/$mode-strace.load"
  cat "$OUT/$mode-strace.txt"

  [[ -n "${NO_PERF:-}" ]] && continue
  echo "== $mode: perf record (5 s)"
  "$LOADGEN" "${args[@]}" --label "$mode-perf" >"$OUT/$mode-perf.load" &
  lg=$!
  sleep 2
  perf record -F 499 -g -p "$TPID" -o "$OUT/$mode.perf.data" -- sleep 5 >/dev/null 2>&1 || true
  wait "$lg"
  grep -v '^RESULT' "$OUT/$mode-perf.load"
  perf report -i "$OUT/$mode.perf.data" --no-children --sort comm,dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15
  perf report -i "$OUT/$mode.perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -30
done
echo "raw data in $OUT"
