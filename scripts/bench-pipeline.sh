#!/usr/bin/env bash
# Issue 4 benchmark: tocsin's pipeline (routing + alert lifecycle + grouping + muting +
# rendering, in-process, no HTTP, no store) against Prometheus Alertmanager fed the same
# 100,000 alerts over HTTP. Loopback only. Prints one table at the end; raw output goes to
# $OUT (default: a temp dir).
#
#   scripts/bench-pipeline.sh              # both
#   SKIP_AM=1 scripts/bench-pipeline.sh    # tocsin only
#   SKIP_BUILD=1 scripts/bench-pipeline.sh # reuse target/release/tocsin-bench-pipeline
#   AM_CONNS=4                             # concurrent connections posting to Alertmanager
#
# Not apples to apples: tocsin's figures exclude HTTP and JSON parsing (parsing is reported
# separately); Alertmanager's include HTTP, JSON decoding and its API validation, and its
# dispatcher aggregates into groups asynchronously after the POST returned.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
AM_PORT=${AM_PORT:-19094}
AM_CONNS=${AM_CONNS:-4}
OUT=${OUT:-$(mktemp -d /tmp/tocsin-bench-pipeline.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/tocsin-bench-pipeline-data.XXXXXX")
BENCH="$ROOT/target/release/tocsin-bench-pipeline"
AM_BIN=$(command -v prometheus-alertmanager || command -v alertmanager || true)
APID=

cleanup() {
  if [[ -n "$APID" ]]; then
    kill "$APID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$APID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$APID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '== %s\n' "$*" >&2; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
  log "building (cargo build --release --bin tocsin-bench-pipeline)"
  (cd "$ROOT" && cargo build --release --bin tocsin-bench-pipeline) >&2
fi

: >"$OUT/results.jsonl"

log "tocsin: $BENCH"
"$BENCH" | tee "$OUT/tocsin.txt" | grep '^RESULT ' | sed 's/^RESULT //' >>"$OUT/results.jsonl"

if [[ -n "$AM_BIN" && -z "${SKIP_AM:-}" ]]; then
  log "alertmanager: $("$AM_BIN" --version 2>&1 | head -1)"
  mkdir -p "$WORK/am/data"
  # Same shape as tocsin's bench config: group_by group, the same two inhibit rules, a
  # webhook receiver pointing at a closed port (group_wait 30s: nothing is sent during the run).
  cat >"$WORK/am/alertmanager.yml" <<EOF
route:
  receiver: hook
  group_by: ["group"]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - receiver: hook
      matchers: ['alertname=~"es\\\\..*"']
      group_by: ["group"]
    - receiver: hook
      matchers: ['alertname=~"svc\\\\..*"', 'env="prod"']
      group_by: ["group"]
      continue: true
    - receiver: hook
      matchers: ['alertname=~"(svc|disk)\\\\..*"']
      group_by: ["group"]
    - receiver: hook
      matchers: ['alertname=~"host\\\\..*"', 'severity=~"warning|error|critical"']
      group_by: ["group"]
inhibit_rules:
  - source_matchers: ['alertname="es.unreachable"']
    target_matchers: ['alertname=~"es\\\\.index_.*"']
    equal: ["cluster"]
  - source_matchers: ['alertname="svc.down"']
    target_matchers: ['alertname="svc.latency"']
    equal: ["group", "service"]
receivers:
  - name: hook
    webhook_configs:
      - url: "http://127.0.0.1:9/hook"
        send_resolved: true
EOF
  "$AM_BIN" --config.file="$WORK/am/alertmanager.yml" --storage.path="$WORK/am/data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address="" \
    --log.level=warn >"$OUT/am.log" 2>&1 &
  APID=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$AM_PORT/-/ready" 2>/dev/null && break
    sleep 0.1
  done
  "$BENCH" --alertmanager "http://127.0.0.1:$AM_PORT" --am-pid "$APID" --conns "$AM_CONNS" 2>&1 \
    | tee "$OUT/am.txt" | grep '^RESULT ' | sed 's/^RESULT //' >>"$OUT/results.jsonl"
  log "alertmanager alert groups: $(curl -fsS "http://127.0.0.1:$AM_PORT/api/v2/alerts/groups" | jq length)"
else
  log "prometheus-alertmanager not installed (or SKIP_AM set): tocsin only"
fi

echo
echo "raw: $OUT/tocsin.txt $OUT/am.txt; results: $OUT/results.jsonl"
jq -rs '
  def i(x): if x == null then "-" else (x | round | tostring) end;
  def f(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
  (["system", "pass", "events", "events/s", "parse/s", "deliveries", "muted", "ms", "RSS MiB", "HWM MiB"] | @tsv),
  (.[] | [.system, .pass, i(.events // .alerts), i(.events_per_s), i(.parse_per_s), i(.deliveries // .due),
          i(.muted), f(.ms), f(.rss_mib), f(.hwm_mib)] | @tsv)
' "$OUT/results.jsonl" | column -t -s $'\t'
