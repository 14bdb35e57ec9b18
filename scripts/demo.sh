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
# Bytes, not characters, and a dot in $EPOCHREALTIME whatever the user's locale.
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${ENVOYAGE_RUN_DIR:-$ROOT/.run}"
# The ports the running stack was started with (make up keeps them in $RUN/settings), whatever
# is given here: make test-add checks the stack make status shows, not the default ports.
if [ "${COMPOSE:-}" != 1 ] && [ -f "$RUN/settings" ]; then
  while IFS='=' read -r name kept; do
    if [ -n "${!name:-}" ] && [ "${!name}" != "$kept" ]; then
      printf '[demo] %s=%s ignored: the stack runs with %s=%s (kept in %s)\n' "$name" "${!name}" "$name" "${kept:-(default)}" "$RUN/settings"
    fi
    if [ -z "$kept" ]; then unset "$name"; else export "$name=$kept"; fi
  done <"$RUN/settings"
fi
# Where the stack listens (BIND_ADDRESS, else as make up was given it; 0.0.0.0 is reached on loopback).
BIND="${BIND_ADDRESS:-$(cat "$RUN/bind-address" 2>/dev/null || echo 127.0.0.1)}"
if [ "$BIND" = 0.0.0.0 ]; then REACH=127.0.0.1; else REACH="$BIND"; fi
API="http://$REACH:${API_PORT:-8080}"
# An API started with API_TOKENS_FILE takes its first token (sent to the API only, never through Envoy).
source "$ROOT/scripts/api-token.sh"
API_AUTH="$(api_token)" || exit 1
ENVOY="http://$REACH:${LISTENER_PORT:-10000}"
ADMIN="http://127.0.0.1:${ENVOY_ADMIN_PORT:-9901}"
HOST="web.example.com"
A_PORT="${UPSTREAM_A_PORT:-5678}"
B_PORT="${UPSTREAM_B_PORT:-5679}"
if [ "${COMPOSE:-}" = 1 ]; then A_ADDRESS=upstream-a B_ADDRESS=upstream-b; else A_ADDRESS="$REACH" B_ADDRESS="$REACH"; fi
TIMEOUT_S=10
READ_TIMEOUT_S=2 # one request: a server that accepts and never answers does not hang the demo

say() { printf '[demo] %s\n' "$*"; }
fail() { printf '[demo] FAIL: %s\n' "$*" >&2; exit 1; }

# http METHOD URL [BODY]: one HTTP/1.1 request through bash's /dev/tcp; sets STATUS and BODY.
# No process is started (curl takes ~20 ms just to start on a small machine), so the times this
# demo prints are the system's own.
http() {
  local method="$1" url="$2" body="${3:-}" address path line fd chunked=0 length="" size chunk
  address="${url#http://}"; path="/${address#*/}"; address="${address%%/*}"
  [ "$path" = "/$address" ] && path="/"
  STATUS="000" BODY=""
  { exec {fd}<>"/dev/tcp/${address%:*}/${address#*:}"; } 2>/dev/null || return 0
  local auth=""
  [ -z "$API_AUTH" ] || [[ "$url" != "$API"/* ]] || auth="Authorization: Bearer $API_AUTH"$'\r\n'
  printf '%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%sContent-Length: %d\r\n\r\n%s' "$method" "$path" \
    "${HOST_HEADER:-$address}" "$auth" "${body:+Content-Type: application/json$'\r\n'}" "${#body}" "$body" >&"$fd"
  IFS=' ' read -r -t "$READ_TIMEOUT_S" _ STATUS _ <&"$fd" || true
  STATUS="${STATUS%$'\r'}"
  while IFS= read -r -t "$READ_TIMEOUT_S" line <&"$fd" && [ "$line" != $'\r' ]; do
    line="${line,,}"; line="${line%$'\r'}"
    [[ "$line" == transfer-encoding:*chunked* ]] && chunked=1
    [[ "$line" =~ ^content-length:\ *([0-9]+)$ ]] && length="${BASH_REMATCH[1]}"
  done
  # Read what the headers announce rather than wait for the close: Envoy holds a connection it
  # answered itself (a 404) open for a second before closing it.
  if [ -n "$length" ]; then
    [ "$length" = 0 ] || IFS= read -r -t "$READ_TIMEOUT_S" -N "$length" BODY <&"$fd" || true
  elif [ "$chunked" = 1 ]; then
    while IFS= read -r -t "$READ_TIMEOUT_S" line <&"$fd" && [[ "${line%$'\r'}" =~ ^[0-9a-fA-F]+$ ]]; do
      size=$(( 16#${line%$'\r'} ))
      [ "$size" -gt 0 ] || break
      IFS= read -r -t "$READ_TIMEOUT_S" -N "$size" chunk <&"$fd" || true
      BODY+="$chunk"
      IFS= read -r -t "$READ_TIMEOUT_S" line <&"$fd" || true # the line end after the chunk
    done
  else
    while IFS= read -r -t "$READ_TIMEOUT_S" line <&"$fd" || [ -n "$line" ]; do BODY+="$line"$'\n'; line=""; done
  fi
  BODY="${BODY%$'\n'}"
  exec {fd}>&-
}

record() { printf '{"domains":["%s"],"endpoints":[{"address":"%s","port":%s}]}' "$HOST" "$1" "$2"; }

# expect_through_envoy WHAT STARTED_US EXPECTED [HINT]: EXPECTED is a body line or an HTTP
# status; HINT follows the failure message. Times are microseconds from $EPOCHREALTIME (a bash
# variable: no process to start).
expect_through_envoy() {
  local what="$1" started="$2" expected="$3" hint="${4:-}" deadline=$(( ${EPOCHREALTIME/./} + TIMEOUT_S * 1000000 )) got elapsed
  while :; do
    HOST_HEADER="$HOST" http GET "$ENVOY/"
    if [[ "$expected" =~ ^[0-9]{3}$ ]]; then got="$STATUS"; else got="$BODY"; fi
    if [ "$got" = "$expected" ]; then
      elapsed=$(( ${EPOCHREALTIME/./} - started ))
      say "ok: $what ($(( elapsed / 1000 )).$(( elapsed % 1000 / 100 )) ms from the API call to the first correct response through Envoy)"
      return
    fi
    [ "${EPOCHREALTIME/./}" -lt "$deadline" ] || fail "$what: Envoy answered '$got' instead of '$expected' after ${TIMEOUT_S}s${hint:+ ($hint)}"
  done
}

check_envoy_not_restarted() {
  [ -f "$RUN/envoy.started" ] || fail "the stack is not running: make up (or make compose-up)"
  local pid="" started uptime
  if [ "${COMPOSE:-}" != 1 ]; then
    pid="$(cat "$RUN/envoy.pid" 2>/dev/null || true)"
    [ -n "$pid" ] || fail "the stack's Envoy is not running: make status says why, make up starts it again"
    kill -0 "$pid" 2>/dev/null || fail "the Envoy started by make up (pid $pid) is gone: make up starts it again"
  fi
  started="$(cat "$RUN/envoy.started")"
  uptime="$(curl -fsS --max-time 2 "$ADMIN/server_info" | sed -n 's/.*"uptime_current_epoch": *"\([0-9]*\)s".*/\1/p')"
  [ -n "$uptime" ] || fail "cannot read Envoy's uptime from $ADMIN/server_info"
  # Up at least since make up started it (2 s of slack for clock rounding).
  [ "$uptime" -ge $(( $(date +%s) - started - 2 )) ] || fail "Envoy was restarted: up ${uptime}s, started by make up $(( $(date +%s) - started ))s ago"
  say "ok: same Envoy process${pid:+ (pid $pid)}, up ${uptime}s: not restarted since it was started"
}

add() {
  check_envoy_not_restarted
  local body started
  body="$(record "$A_ADDRESS" "$A_PORT")"
  started="${EPOCHREALTIME/./}"
  http PUT "$API/v1/services/web" "$body"
  [[ "$STATUS" =~ ^20[01]$ ]] || fail "PUT /v1/services/web answered $STATUS: $BODY"
  say "registered $HOST → upstream A ($A_ADDRESS:$A_PORT), HTTP $STATUS"
  expect_through_envoy "$HOST answers from upstream A" "$started" "Hello from upstream A"
  check_envoy_not_restarted
}

switch() {
  check_envoy_not_restarted
  local body started
  body="$(record "$B_ADDRESS" "$B_PORT")"
  started="${EPOCHREALTIME/./}"
  http DELETE "$API/v1/services/web"
  [[ "$STATUS" =~ ^(204|404)$ ]] || fail "DELETE /v1/services/web answered $STATUS: $BODY"
  http PUT "$API/v1/services/web" "$body"
  [[ "$STATUS" =~ ^20[01]$ ]] || fail "PUT /v1/services/web answered $STATUS: $BODY"
  say "switched $HOST → upstream B ($B_ADDRESS:$B_PORT): removed, then re-added"
  expect_through_envoy "$HOST answers from upstream B" "$started" "Hello from upstream B"
  check_envoy_not_restarted
}

remove() {
  check_envoy_not_restarted
  local started
  started="${EPOCHREALTIME/./}"
  http DELETE "$API/v1/services/web"
  case "$STATUS" in
    204) say "removed $HOST" ;;
    404) say "web was not registered: nothing to remove" ;; # run twice, or after a switch that failed
    *) fail "DELETE /v1/services/web answered $STATUS: $BODY" ;;
  esac
  expect_through_envoy "$HOST answers 404" "$started" "404" \
    "another service (a wildcard domain such as *.example.com?) still routes $HOST: GET $API/v1/services lists them"
  check_envoy_not_restarted
}

case "${1:-}" in
  add) add ;;
  switch) switch ;;
  remove) remove ;;
  *) echo "usage: $0 add|switch|remove" >&2; exit 2 ;;
esac
