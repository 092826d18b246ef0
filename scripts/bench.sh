#!/usr/bin/env bash
# Benchmarks tocsin (and Prometheus Alertmanager, when installed) on this machine, loopback
# only. Prints one table at the end; raw output goes to $OUT (default: a temp dir).
#
#   scripts/bench.sh                 # every scenario, both servers
#   DURATION=10s scripts/bench.sh    # per-scenario sending time (each run stays ≤ 30 s)
#   SKIP_AM=1 scripts/bench.sh       # tocsin only
#   SKIP_BUILD=1 scripts/bench.sh    # reuse target/release binaries
#
# Scenarios (same for both servers):
#   single     closed loop, 1 event per request, 64 connections
#   batch      closed loop, 100 events per request, 64 connections
#   floor      open loop at 15,000 req/s of GET on the health endpoint: nothing stored, the
#              latency that the generator, loopback TCP and the HTTP layer add by themselves
#   half       open loop at half the single-event target (15,000 req/s), request latency
#   halfmax    open loop at half the single-event rate this server reached in "single"
#   notify     200 events/s of kind bench.latency routed to a webhook (the generator's own
#              receiver), send→notifier-request latency
#   notify-mixed  the same while 5,000 plain events/s (stored, not delivered) stream in
#   memory     1,000,000 events in batches of 100 into a fresh server, then VmRSS
# Before any server starts, a stall probe spins a thread per core for 5 s and counts the gaps
# (time the machine took a core away): on a virtual machine these set a floor under every p99.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10s}
[[ "$DURATION" =~ ^[0-9]+s$ ]] || { echo "DURATION must be whole seconds, e.g. 10s" >&2; exit 2; }
CONNS=${CONNS:-64}
HALF_RATE=${HALF_RATE:-15000}
MIXED_RATE=${MIXED_RATE:-5000}
TOCSIN_PORT=${TOCSIN_PORT:-19750}
AM_PORT=${AM_PORT:-19093}
HOOK_PORT=${HOOK_PORT:-19901}
OUT=${OUT:-$(mktemp -d /tmp/tocsin-bench.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/tocsin-bench-data.XXXXXX")   # normal disk, not tmpfs
LOADGEN="$ROOT/target/release/tocsin-loadgen"
TOCSIN="$ROOT/target/release/tocsin"
AM_BIN=$(command -v prometheus-alertmanager || true)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '== %s\n' "$*" >&2; }

wait_http() { # url
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2
  return 1
}

stop() { # pid
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

if [[ -z "${SKIP_BUILD:-}" ]]; then
  log "building (cargo build --release --bins)"
  (cd "$ROOT" && cargo build --release --bins) >&2
fi

# ---------------------------------------------------------------------------------------------
# tocsin
start_tocsin() { # name -> sets TPID
  local dir="$WORK/tocsin-$1"
  mkdir -p "$dir"
  cat >"$dir/tocsin.toml" <<EOF
[server]
listen = "127.0.0.1:$TOCSIN_PORT"
max_body_bytes = 4194304

[store]
url = "sqlite://$dir/tocsin.db"

[log]
level = "warn"

[[api_keys]]
name = "bench"
key = "bench-key"
scopes = ["events:write", "events:read"]

[notifiers.hook]
type = "webhook"
url = "http://127.0.0.1:$HOOK_PORT/hook"

# Only bench.latency is delivered; bench.load is stored (durably, FTS-indexed) and nothing more.
[[routes]]
kinds = ["bench.latency"]
notifier = "hook"
group_wait = "0s"
EOF
  (cd "$dir" && exec "$TOCSIN" serve --config "$dir/tocsin.toml" >"$OUT/tocsin-$1.log" 2>&1) &
  TPID=$!
  PIDS+=("$TPID")
  wait_http "http://127.0.0.1:$TOCSIN_PORT/healthz"
}

# ---------------------------------------------------------------------------------------------
# Alertmanager: alerts go to a null receiver, except kind=bench.latency, which goes to the
# webhook at once (group_wait 0s) in a group of its own (group_by: ['...']).
start_am() { # name -> sets APID
  local dir="$WORK/am-$1"
  mkdir -p "$dir/data"
  cat >"$dir/alertmanager.yml" <<EOF
route:
  receiver: "null"
  group_by: ["alertname"]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
  routes:
    - receiver: hook
      matchers: ['kind="bench.latency"']
      group_by: ["..."]
      group_wait: 0s
      group_interval: 1m
receivers:
  - name: "null"
  - name: hook
    webhook_configs:
      - url: "http://127.0.0.1:$HOOK_PORT/hook"
        send_resolved: false
EOF
  "$AM_BIN" --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address="" \
    --log.level=warn >"$OUT/am-$1.log" 2>&1 &
  APID=$!
  PIDS+=("$APID")
  wait_http "http://127.0.0.1:$AM_PORT/-/ready"
}

run() { # label target url pid args...
  local label=$1 target=$2 url=$3 pid=$4
  shift 4
  log "$label"
  "$LOADGEN" --target "$target" --url "$url" --key bench-key --label "$label" --server-pid "$pid" "$@" \
    | tee "$OUT/$label.txt" >&2
  grep '^RESULT ' "$OUT/$label.txt" | sed 's/^RESULT //' >>"$OUT/results.jsonl"
}

scenarios() { # prefix target url pid
  local p=$1 t=$2 u=$3 pid=$4
  run "$p-single" "$t" "$u" "$pid" --mode single --connections "$CONNS" --duration "$DURATION"
  run "$p-batch" "$t" "$u" "$pid" --mode batch --batch 100 --connections "$CONNS" --duration "$DURATION"
  run "$p-floor" "$t" "$u" "$pid" --mode health --connections "$CONNS" --rate "$HALF_RATE" --duration "$DURATION"
  run "$p-half" "$t" "$u" "$pid" --mode single --connections "$CONNS" --rate "$HALF_RATE" --duration "$DURATION"
  # Also at half of what this server actually reached in "$p-single".
  local achieved
  achieved=$(jq -s --arg l "$p-single" 'map(select(.label == $l))[0].requests_per_s / 2 | floor' "$OUT/results.jsonl")
  run "$p-halfmax" "$t" "$u" "$pid" --mode single --connections "$CONNS" --rate "$achieved" --duration "$DURATION"
  # Latency is measured on a server that has caught up with the bursts above (tocsin: every
  # accepted event applied and full-text indexed), as in steady operation.
  catch_up "$t" "$u"
  run "$p-notify" "$t" "$u" "$pid" --mode single --connections 4 --rate 200 --duration "$DURATION" \
    --kind bench.latency --receiver "127.0.0.1:$HOOK_PORT"
  # Most events owe no message: the notifier's latency while plain events stream in beside it.
  local secs=${DURATION%s}
  "$LOADGEN" --target "$t" --url "$u" --key bench-key --label "$p-mixed-bulk" --mode single --connections 32 \
    --rate "$MIXED_RATE" --duration "$(( secs + 2 ))s" >"$OUT/$p-mixed-bulk.txt" 2>&1 &
  local bulk=$!
  sleep 1
  run "$p-notify-mixed" "$t" "$u" "$pid" --mode single --connections 4 --rate 200 --duration "$DURATION" \
    --kind bench.latency --receiver "127.0.0.1:$HOOK_PORT"
  wait "$bulk"
}

# Stores 1,000,000 new events in batches of 100, in runs of at most 30 s each (at most 4), and
# keeps the last run's line, whose RSS is read after the millionth event.
fill() { # label target url pid
  local label=$1 target=$2 url=$3 pid=$4 left=1000000 part=1
  while (( left > 0 && part <= 4 )); do
    run "$label-$part" "$target" "$url" "$pid" --mode batch --batch 100 --connections "$CONNS" \
      --total "$left" --duration 30s
    local done_events
    done_events=$(tail -1 "$OUT/results.jsonl" | jq '.ok_requests * .batch')
    left=$(( left - done_events ))
    part=$(( part + 1 ))
  done
  log "$label: $(( 1000000 - left )) events stored"
  settled "$label" "$target" "$url" "$pid"
}

catch_up() { # target url
  if [[ "$1" == tocsin ]]; then
    # A text search waits (at most 2 s at a time) until what was accepted is applied and
    # indexed; it says "index_lag" while the index is still behind. A word found nowhere keeps
    # the search itself cheap (no million matches held by a reader connection).
    for _ in $(seq 1 60); do
      curl -fsS -H "Authorization: Bearer bench-key" "$2/api/v1/events?q=catchupprobe&limit=1" 2>/dev/null \
        | grep -q '"index_lag"' || break
    done
  fi
  sleep 1
}

# Resident memory once the server has everything stored and sits idle: text searches until
# tocsin's index has caught up (see catch_up), then 2 s of quiet.
settled() { # label target url pid
  local label=$1 target=$2 url=$3 pid=$4
  catch_up "$target" "$url"
  sleep 1
  local rss hwm
  rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
  log "$label settled: VmRSS $rss MiB (VmHWM $hwm MiB)"
  printf '{"label":"%s-settled","target":"%s","rss_mib":%s,"hwm_mib":%s}\n' "$label" "$target" "$rss" "$hwm" \
    >>"$OUT/results.jsonl"
}

: >"$OUT/results.jsonl"
log "machine: $(nproc) cores; $(free -g | awk '/^Mem:/ {print $2 " GiB RAM"}'); data in $WORK"
"$LOADGEN" --stall-probe 5s --label machine-stalls | tee "$OUT/machine-stalls.txt" >&2
grep '^RESULT ' "$OUT/machine-stalls.txt" | sed 's/^RESULT //' >>"$OUT/results.jsonl"

start_tocsin main
scenarios tocsin tocsin "http://127.0.0.1:$TOCSIN_PORT" "$TPID"
stop "$TPID"
start_tocsin memory
fill tocsin-memory tocsin "http://127.0.0.1:$TOCSIN_PORT" "$TPID"
du -sh "$WORK/tocsin-memory" >&2 || true
stop "$TPID"

if [[ -n "$AM_BIN" && -z "${SKIP_AM:-}" ]]; then
  log "alertmanager: $("$AM_BIN" --version 2>&1 | head -1)"
  start_am main
  scenarios am alertmanager "http://127.0.0.1:$AM_PORT" "$APID"
  stop "$APID"
  start_am memory
  fill am-memory alertmanager "http://127.0.0.1:$AM_PORT" "$APID"
  stop "$APID"
else
  log "prometheus-alertmanager not installed (or SKIP_AM set): tocsin only"
fi

# ---------------------------------------------------------------------------------------------
echo
echo "results: $OUT/results.jsonl"
jq -rs '
  def f(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
  def i(x): if x == null then "-" else (x | round | tostring) end;
  (["scenario", "req/s", "events/s", "p50 ms", "p99 ms", "max ms", "notify p50", "notify p99", "RSS MiB", "srv CPU%", "gen CPU%", "errors"] | @tsv),
  (.[] | [ .label, i(.requests_per_s), i(.events_per_s), f(.p50_ms), f(.p99_ms), f(.max_ms),
           f(.notify_p50_ms), f(.notify_p99_ms), f(.rss_mib), i(.server_cpu_pct), i(.loadgen_cpu_pct),
           (.errors | tostring) ] | @tsv)
' <(grep -v stall_lost_pct "$OUT/results.jsonl") | column -t -s $'\t'
jq -r 'select(.stall_lost_pct != null)
  | "machine stalls (idle machine, per core-second): \(.stalls_per_core_s_over_1ms * 100 | round / 100) over 1 ms, \(.stalls_per_core_s_over_2ms * 100 | round / 100) over 2 ms; \(.stall_lost_pct * 100 | round / 100) % of the time lost"' \
  "$OUT/results.jsonl"
