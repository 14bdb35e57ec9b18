#!/usr/bin/env bash
# The seed's demo against the running local stack (make up), verified through Envoy:
#
#   demo.sh add      web.example.com → upstream A
#   demo.sh switch   remove it, then re-add it pointing at upstream B
#   demo.sh remove   remove it: Envoy answers 404
#
# Each step exits non-zero when what it verifies does not hold, including when Envoy was
# restarted since the stack came up (the point is that it never needs to be).
# COMPOSE=1 runs it against docker-compose.yaml, where Envoy reaches the upstreams by name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.run"
API="http://127.0.0.1:${API_PORT:-8080}"
ENVOY="http://127.0.0.1:${LISTENER_PORT:-10000}"
ADMIN="http://127.0.0.1:9901"
HOST="web.example.com"
A_PORT="${UPSTREAM_A_PORT:-5678}"
B_PORT="${UPSTREAM_B_PORT:-5679}"
if [ "${COMPOSE:-}" = 1 ]; then A_ADDRESS=upstream-a B_ADDRESS=upstream-b; else A_ADDRESS=127.0.0.1 B_ADDRESS=127.0.0.1; fi
TIMEOUT_S=10

say() { printf '[demo] %s\n' "$*"; }
fail() { printf '[demo] FAIL: %s\n' "$*" >&2; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

api() { # METHOD PATH [BODY] -> prints the HTTP status, body to stderr-free file
  local method="$1" path="$2" body="${3:-}"
  if [ -n "$body" ]; then
    mkdir -p "$RUN"
  curl -sS -o "$RUN/demo-response.json" -w '%{http_code}' -X "$method" -H 'content-type: application/json' --data "$body" "$API$path"
  else
    curl -sS -o "$RUN/demo-response.json" -w '%{http_code}' -X "$method" "$API$path"
  fi
}

record() { printf '{"domains":["%s"],"endpoints":[{"address":"%s","port":%s}]}' "$HOST" "$1" "$2"; }

# expect_through_envoy WHAT STARTED_MS EXPECTED: EXPECTED is a body line or an HTTP status
expect_through_envoy() {
  local what="$1" started="$2" expected="$3" deadline=$(( $(now_ms) + TIMEOUT_S * 1000 )) got
  while :; do
    if [[ "$expected" =~ ^[0-9]{3}$ ]]; then
      got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: $HOST" "$ENVOY/" || true)"
    else
      got="$(curl -s --max-time 1 -H "Host: $HOST" "$ENVOY/" || true)"
    fi
    if [ "$got" = "$expected" ]; then
      say "ok: $what ($(( $(now_ms) - started )) ms from the API call to the first correct response through Envoy)"
      return
    fi
    [ "$(now_ms)" -lt "$deadline" ] || fail "$what: Envoy answered '$got' instead of '$expected' after ${TIMEOUT_S}s"
    sleep 0.005
  done
}

check_envoy_not_restarted() {
  [ -f "$RUN/envoy.started" ] || fail "the stack is not running: make up (or make compose-up)"
  local pid="" started uptime
  if [ "${COMPOSE:-}" != 1 ]; then
    pid="$(cat "$RUN/envoy.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || fail "the Envoy started by make up (pid ${pid:-?}) is gone"
  fi
  started="$(cat "$RUN/envoy.started")"
  uptime="$(curl -fsS --max-time 2 "$ADMIN/server_info" | sed -n 's/.*"uptime_current_epoch": *"\([0-9]*\)s".*/\1/p')"
  [ -n "$uptime" ] || fail "cannot read Envoy's uptime from $ADMIN/server_info"
  # Up at least since make up started it (2 s of slack for clock rounding).
  [ "$uptime" -ge $(( $(date +%s) - started - 2 )) ] || fail "Envoy was restarted: up ${uptime}s, started by make up $(( $(date +%s) - started ))s ago"
  say "ok: same Envoy process${pid:+ (pid $pid)}, up ${uptime}s, never restarted"
}

add() {
  check_envoy_not_restarted
  local started status
  started="$(now_ms)"
  status="$(api PUT /v1/services/web "$(record "$A_ADDRESS" "$A_PORT")")"
  [[ "$status" =~ ^20[01]$ ]] || fail "PUT /v1/services/web answered $status: $(cat "$RUN/demo-response.json")"
  say "registered $HOST → upstream A ($A_ADDRESS:$A_PORT), HTTP $status"
  expect_through_envoy "$HOST answers from upstream A" "$started" "Hello from upstream A"
  check_envoy_not_restarted
}

switch() {
  check_envoy_not_restarted
  local started status
  started="$(now_ms)"
  status="$(api DELETE /v1/services/web)"
  [[ "$status" =~ ^(204|404)$ ]] || fail "DELETE /v1/services/web answered $status: $(cat "$RUN/demo-response.json")"
  status="$(api PUT /v1/services/web "$(record "$B_ADDRESS" "$B_PORT")")"
  [[ "$status" =~ ^20[01]$ ]] || fail "PUT /v1/services/web answered $status: $(cat "$RUN/demo-response.json")"
  say "switched $HOST → upstream B ($B_ADDRESS:$B_PORT): removed, then re-added"
  expect_through_envoy "$HOST answers from upstream B" "$started" "Hello from upstream B"
  check_envoy_not_restarted
}

remove() {
  check_envoy_not_restarted
  local started status
  started="$(now_ms)"
  status="$(api DELETE /v1/services/web)"
  [ "$status" = "204" ] || fail "DELETE /v1/services/web answered $status: $(cat "$RUN/demo-response.json")"
  say "removed $HOST"
  expect_through_envoy "$HOST answers 404" "$started" "404"
  check_envoy_not_restarted
}

case "${1:-}" in
  add) add ;;
  switch) switch ;;
  remove) remove ;;
  *) echo "usage: $0 add|switch|remove" >&2; exit 2 ;;
esac
