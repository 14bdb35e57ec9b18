#!/usr/bin/env bash
# The local stack: nats-server (JetStream), the API, two xDS replicas, Envoy and two demo
# upstreams, as plain processes on loopback. State lives in .run/ (git-ignored): a pid file per
# process, logs in .run/logs, NATS data in .run/nats.
#
#   stack.sh up       start everything that is not running yet, wait until it is ready
#   stack.sh down     stop exactly what `up` started
#   stack.sh logs     follow every log
#   stack.sh status   what runs and is ready, on which port
#   stack.sh restart NAME   stop one process (gracefully), then `up` (which starts it again)
#   stack.sh restart-check NAME   whether restart NAME can run (make restart asks before it builds)
#
# ENVOY_ADS=sotw starts Envoy on state-of-the-world xDS (api_type GRPC) instead of delta.
# NATS_CLUSTER=3 runs NATS as a 3-node JetStream cluster (client ports 4222-4224, routes
# 6222-6224: NATS_ROUTE_PORT, by default NATS_PORT + 2000) with the bucket replicated on all
# three; every service is given all three URLs. The stack remembers its NATS mode, Envoy's
# xDS variant, BIND_ADDRESS and the settings below (REMEMBERED) until `down`.
#
# Ports and addresses follow the documented defaults; each can be overridden by the same
# environment variable the services read (README, "Configuration"): XDS_PORT and XDS_HTTP_PORT
# are the first replica's, the second takes the next port. ENVOY_ADMIN_PORT moves Envoy's admin
# (9901), ENVOYAGE_RUN_DIR the state folder (.run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/api-token.sh"
RUN="${ENVOYAGE_RUN_DIR:-$ROOT/.run}"
LOGS="$RUN/logs"
export PATH="$ROOT/.tools/bin:$PATH"

log() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

pidfile() { echo "$RUN/$1.pid"; }
# running PID: the process exists and has not exited (a zombie not yet reaped has: some init
# processes reap slowly, and kill -0 still succeeds on it).
# proc_stat PID: /proc/PID/stat after the command name (which may hold spaces): field 1 is the state.
proc_stat() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null; }
running() { kill -0 "$1" 2>/dev/null && [ "$(proc_stat "$1" | cut -c1)" != Z ]; }
# When PID started (clock ticks since boot): kept beside the pid file, so a pid the system gave
# to another process since (after a reboot, or a crash long ago) is not taken for ours.
started_at() { proc_stat "$1" | cut -d' ' -f20; }
startfile() { echo "$RUN/$1.pid-start"; }
alive() {
  local f s pid
  f="$(pidfile "$1")"; s="$(startfile "$1")"
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  running "$pid" && { [ ! -f "$s" ] || [ "$(cat "$s")" = "$(started_at "$pid")" ]; }
}
# Whether any process of the stack runs: a nats-server (the single one, or any node of a cluster:
# nats-1 may be the one that died), the API, a replica, Envoy or an upstream.
any_stack_alive() {
  local f
  for f in "$RUN"/nats.pid "$RUN"/nats-*.pid "$RUN"/api.pid "$RUN"/xds-*.pid "$RUN"/envoy.pid "$RUN"/upstream-*.pid; do
    [ -f "$f" ] && alive "$(basename "$f" .pid)" && return 0
  done
  return 1
}
# The documented defaults of the stack's ports (and the services' log level): a value given that
# equals one is the same setting as none given.
declare -A DEFAULTS=([NATS_PORT]=4222 [API_PORT]=8080 [XDS_PORT]=9090 [XDS_HTTP_PORT]=9190 [LISTENER_PORT]=10000
  [ENVOY_ADMIN_PORT]=9901 [UPSTREAM_A_PORT]=5678 [UPSTREAM_B_PORT]=5679 [LOG_LEVEL]=info)
# The stack's ports and modes, from the environment (after resolve_settings), else the documented defaults.
settings() {
  NATS_PORT="${NATS_PORT:-${DEFAULTS[NATS_PORT]}}"
  NATS_ROUTE_PORT="${NATS_ROUTE_PORT:-$((NATS_PORT + 2000))}"
  NATS_CLUSTER_ASKED="${NATS_CLUSTER:-}"
  NATS_CLUSTER="${NATS_CLUSTER:-1}"
  NATS_CLUSTER_RUNNING=""
  API_PORT="${API_PORT:-${DEFAULTS[API_PORT]}}"
  XDS_PORT="${XDS_PORT:-${DEFAULTS[XDS_PORT]}}"
  XDS_PORTS=("$XDS_PORT" "$((XDS_PORT + 1))")
  XDS_HTTP_PORT="${XDS_HTTP_PORT:-${DEFAULTS[XDS_HTTP_PORT]}}"
  XDS_HTTP_PORTS=("$XDS_HTTP_PORT" "$((XDS_HTTP_PORT + 1))")
  LISTENER_PORT="${LISTENER_PORT:-${DEFAULTS[LISTENER_PORT]}}"
  ADMIN_PORT="${ENVOY_ADMIN_PORT:-${DEFAULTS[ENVOY_ADMIN_PORT]}}"
  UPSTREAM_A_PORT="${UPSTREAM_A_PORT:-${DEFAULTS[UPSTREAM_A_PORT]}}"
  UPSTREAM_B_PORT="${UPSTREAM_B_PORT:-${DEFAULTS[UPSTREAM_B_PORT]}}"
  BIND=127.0.0.1
  REACH=127.0.0.1
  BIND_RUNNING=""
}
# Settings a running stack was started with, kept in $RUN/settings until `down` (empty: not
# given, the default): `up` restarting a stopped process starts it as before (a replica on another
# LISTENER_PORT would move Envoy's listener), and refuses a different value; `status` and `down`
# look at the stack's own ports. NATS_CLUSTER, ENVOY_ADS and BIND_ADDRESS are kept on their own.
REMEMBERED=(NATS_PORT NATS_ROUTE_PORT API_PORT XDS_PORT XDS_HTTP_PORT LISTENER_PORT LISTENER_ADDRESS ENVOY_ADMIN_PORT
  UPSTREAM_A_PORT UPSTREAM_B_PORT LOG_LEVEL NATS_TIMEOUT_MS SHUTDOWN_GRACE_MS API_BODY_LIMIT COMMIT_BATCH_MS
  COMMIT_BURST COMMIT_STANDBY_MS XDS_WRITE_BUDGET_MB ENVOYAGE_BUCKET ENVOYAGE_STATUS_BUCKET API_TOKENS_FILE)
# resolve_settings COMMAND: takes the running stack's settings; for up, refuses one asked differently.
resolve_settings() {
  local file="$RUN/settings" name kept asked
  if [ -f "$file" ] && ! any_stack_alive; then rm -f "$file"; fi
  if [ -f "$file" ]; then
    while IFS='=' read -r name kept; do
      asked="${!name:-}"
      # The default, given: the same setting as the stack's when it was started without one.
      [ -n "$kept" ] || [ "$asked" != "${DEFAULTS[$name]:-}" ] || asked=""
      if [ -z "$asked" ]; then
        [ -z "$kept" ] || export "$name=$kept"
        # Said, so that a value which made a process fail at the start is seen to come back from here.
        [ -z "$kept" ] || [ "$1" != up ] || log "$name=$kept, as the stack was started (kept in $file until make down)"
      elif [ "$asked" != "$kept" ] && [ "$1" = up ]; then
        die "the stack runs with $name=${kept:-(default)} (kept in $file); make down first to change it"
      elif [ "$asked" != "$kept" ]; then
        # status and down look at the stack that runs, whatever the environment says.
        log "$name=$asked ignored: the stack runs with $name=${kept:-(default)} (kept in $file)"
        if [ -z "$kept" ]; then unset "$name"; else export "$name=$kept"; fi
      fi
    done <"$file"
  elif [ "$1" = up ]; then
    mkdir -p "$RUN"
    for name in "${REMEMBERED[@]}"; do echo "$name=${!name:-}"; done >"$file"
  fi
}
# The NATS mode: as asked, else the one the running stack was started in (kept in
# $RUN/nats-cluster while any process of it runs, even with every nats-server dead, so make up
# restarts the same servers under the API and replicas; a file left by a whole crash is dropped).
resolve_nats_mode() { # COMMAND: status looks at the running stack, whatever is asked
  if [ -f "$RUN/nats-cluster" ]; then
    if any_stack_alive; then NATS_CLUSTER_RUNNING="$(cat "$RUN/nats-cluster")"; else rm -f "$RUN/nats-cluster"; fi
  fi
  if [ "$1" != up ] && [ -n "$NATS_CLUSTER_RUNNING" ] && [ -n "$NATS_CLUSTER_ASKED" ] && [ "$NATS_CLUSTER_ASKED" != "$NATS_CLUSTER_RUNNING" ]; then
    log "NATS_CLUSTER=$NATS_CLUSTER_ASKED ignored: the stack runs with NATS_CLUSTER=$NATS_CLUSTER_RUNNING"
    NATS_CLUSTER_ASKED=""
  fi
  NATS_CLUSTER="${NATS_CLUSTER_ASKED:-${NATS_CLUSTER_RUNNING:-1}}"
}
# The address the stack listens on: as asked (BIND_ADDRESS), else the one the running stack was
# started with (kept in $RUN/bind-address like the NATS mode), else 127.0.0.1. REACH is where this
# machine reaches it: loopback for 0.0.0.0.
resolve_bind() { # COMMAND: status and down look at the running stack, whatever is asked
  if [ -f "$RUN/bind-address" ]; then
    if any_stack_alive; then BIND_RUNNING="$(cat "$RUN/bind-address")"; else rm -f "$RUN/bind-address"; fi
  fi
  local asked="${BIND_ADDRESS:-}"
  if [ "$1" != up ] && [ -n "$BIND_RUNNING" ] && [ -n "$asked" ] && [ "$asked" != "$BIND_RUNNING" ]; then
    log "BIND_ADDRESS=$asked ignored: the stack runs with BIND_ADDRESS=$BIND_RUNNING"
    asked=""
  fi
  BIND="${asked:-${BIND_RUNNING:-127.0.0.1}}"
  [[ "$BIND" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "BIND_ADDRESS must be an IPv4 address or 0.0.0.0 (the stack's nats-server and Envoy take no IPv6 address here), got \"$BIND\""
  if [ "$BIND" = 0.0.0.0 ]; then REACH=127.0.0.1; else REACH="$BIND"; fi
}
# Where the logs are, as the user would type it (relative to the project when inside it).
LOGS_SHOWN="${LOGS#"$ROOT"/}"

# port_busy PORT [ADDRESS]: something listens there (ADDRESS: where the stack is reached).
port_busy() { (exec 3<>"/dev/tcp/${2:-$REACH}/$1") 2>/dev/null; }

# A log past this size when its process starts is moved to NAME.log.1 (one generation kept), so
# the logs of a stack brought up again and again stay bounded.
LOG_ROTATE_BYTES=$(( 64 * 1024 * 1024 ))

# start NAME COMMAND... : runs COMMAND in its own process group, logging to .run/logs/NAME.log
start() {
  local name="$1"; shift
  if alive "$name"; then log "$name already running (pid $(cat "$(pidfile "$name")"))"; return; fi
  local file="$LOGS/$name.log"
  if [ -f "$file" ] && [ "$(stat -c %s "$file")" -gt "$LOG_ROTATE_BYTES" ]; then mv -f "$file" "$file.1"; fi
  # Where this run's lines start: a process that dies while starting is shown by them, not by an older run's.
  stat -c %s "$file" >"$RUN/$name.log-offset" 2>/dev/null || echo 0 >"$RUN/$name.log-offset"
  setsid "$@" >>"$file" 2>&1 < /dev/null &
  echo $! >"$(pidfile "$name")"
  started_at $! >"$(startfile "$name")"
  log "$name started (pid $!, log $LOGS_SHOWN/$name.log)"
}

# show_log_end NAME: the last lines NAME logged since it was started this time, indented, on stderr.
show_log_end() {
  tail -c +"$(( $(cat "$RUN/$1.log-offset" 2>/dev/null || echo 0) + 1 ))" "$LOGS/$1.log" 2>/dev/null | tail -n 5 | sed 's/^/  /' >&2
}

# wait_for WHAT TIMEOUT_S NAME COMMAND... : retries COMMAND until it succeeds. NAME is the process
# (as started) that must bring it up: if it exits meanwhile (a malformed setting, a port taken)
# up fails at once with the end of its log instead of waiting out the timeout; if it runs but
# never gets there, up fails with the end of its log at the timeout.
wait_for() {
  local what="$1" timeout="$2" name="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  # A plain make up would start it again with the same settings: they are kept until make down.
  local rest="; make down stops the rest of the stack and forgets the settings it was started with"
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      show_log_end "$name"
      die "$name exited while starting; the end of its log, $LOGS_SHOWN/$name.log, is above$rest"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log_end "$name"
      die "$what did not come up within ${timeout}s; the end of $name's log, $LOGS_SHOWN/$name.log, is above; make down stops $name, which keeps running, with the rest of the stack and forgets the settings it was started with"
    fi
    sleep 0.1
  done
}

http_ok() { curl -fsS -o /dev/null --max-time 1 "$1"; }
envoy_ready() { [ "$(curl -fsS --max-time 1 "http://127.0.0.1:$ADMIN_PORT/ready")" = "LIVE" ]; }
# The stack's own Envoy, not another on the same port or replicas: its admin says its listener is
# bound, and GET /v1/envoys has its node id (envoy/bootstrap.yaml) connected.
envoy_listening() { [[ "$(curl -fsS --max-time 1 "http://127.0.0.1:$ADMIN_PORT/stats?filter=^listener_manager.total_listeners_active$")" =~ :\ [1-9] ]]; }
envoy_reported() {
  local token
  token="$(api_token)" || return 1
  # The header through curl's config on stdin, not its command line, where ps would show it.
  printf '%s\n' ${token:+"header = \"Authorization: Bearer $token\""} | curl -fsS --max-time 1 -K - "http://$REACH:$API_PORT/v1/envoys" |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => process.exit(JSON.parse(s).envoys.some((e) => e.node === "envoyage-local" && e.connected) ? 0 : 1))'
}

# check_port PORT NAME VARIABLE [ADDRESS]: a port the stack is about to take; a busy one is added
# to TAKEN, which up reports as a whole before starting anything.
TAKEN=()
check_port() {
  if port_busy "$1" "${4:-}"; then TAKEN+=("port $1 (for $2, set by $3) is already in use by another program"); fi
}

# held_by_envoys PORT: every socket listening on PORT is an Envoy's. Envoys share their listener
# port (SO_REUSEPORT; README, "Your own Envoys"), so the operator's own Envoys on it do not keep
# the stack's from starting. ss names the process only for one's own (or as root): otherwise no.
held_by_envoys() {
  local holders
  holders="$(ss -Hltnp "sport = :$1" 2>/dev/null)" || return 1
  [ -n "$holders" ] && ! grep -qv 'users:(("envoy",' <<<"$holders" || return 1
  log "sharing :$1 with Envoy $(grep -o 'pid=[0-9]*' <<<"$holders" | sort -u | tr '\n' ' ')(SO_REUSEPORT): connections are spread over them"
}

up() {
  [ -f "$ROOT/services/api/dist/src/main.js" ] || die "not built: run make up (or npm run build) first"
  mkdir -p "$LOGS"
  local node
  node="$(command -v node)"

  if [ -n "$NATS_CLUSTER_RUNNING" ] && [ "$NATS_CLUSTER_RUNNING" != "$NATS_CLUSTER" ]; then
    die "the stack runs with NATS_CLUSTER=$NATS_CLUSTER_RUNNING; make down first to change it"
  fi
  [ -z "$NATS_CLUSTER_RUNNING" ] || [ -n "$NATS_CLUSTER_ASKED" ] || log "NATS_CLUSTER=$NATS_CLUSTER, as the running stack"
  if [ -n "$BIND_RUNNING" ] && [ "$BIND_RUNNING" != "$BIND" ]; then
    die "the stack runs with BIND_ADDRESS=$BIND_RUNNING; make down first to change it"
  fi
  echo "$BIND" >"$RUN/bind-address"
  # Envoy's xDS variant: as asked, else the one the stack's Envoy was started with (kept in
  # $RUN/envoy-ads like the NATS mode, so an Envoy restarted by make up comes back on it).
  local ads_running="" ads
  if [ -f "$RUN/envoy-ads" ]; then
    if any_stack_alive; then ads_running="$(cat "$RUN/envoy-ads")"; else rm -f "$RUN/envoy-ads"; fi
  fi
  ads="${ENVOY_ADS:-${ads_running:-delta}}"
  [ -z "$ads_running" ] || [ -n "${ENVOY_ADS:-}" ] || log "ENVOY_ADS=$ads, as the stack was started"
  case "$ads" in sotw | delta) ;; *) die "ENVOY_ADS=$ads: use sotw or delta" ;; esac
  if alive envoy && [ -n "$ads_running" ] && [ "$ads" != "$ads_running" ]; then
    die "Envoy runs with ENVOY_ADS=$ads_running; make down first to change it"
  fi
  # Kept from now on, not once Envoy runs: a make up that fails before starting Envoy, then a
  # plain make up, must not start it on the other variant.
  echo "$ads" >"$RUN/envoy-ads"
  # Odd sizes keep a quorum when a node dies; down knows nodes up to 5.
  case "$NATS_CLUSTER" in 1 | 3 | 5) ;; *) die "NATS_CLUSTER=$NATS_CLUSTER: use 1, 3 or 5" ;; esac
  local nats_urls=() nats_names=() nats_routes=()
  if [ "$NATS_CLUSTER" = 1 ]; then
    nats_names=(nats)
    nats_urls=("nats://$REACH:$NATS_PORT")
    nats_routes=("")
  else
    [ $((NATS_ROUTE_PORT + NATS_CLUSTER - 1)) -le 65535 ] || die "cluster route ports from NATS_ROUTE_PORT=$NATS_ROUTE_PORT run past 65535; set NATS_ROUTE_PORT"
    for i in $(seq 1 "$NATS_CLUSTER"); do
      nats_names+=("nats-$i")
      nats_urls+=("nats://$REACH:$((NATS_PORT + i - 1))")
      nats_routes+=("$((NATS_ROUTE_PORT + i - 1))")
    done
  fi
  # Every port of every process to start, before any starts: a taken port found once others ran
  # left them running under settings kept until make down (a taken API port after nats-server
  # started, a taken port of nats-2 after nats-1), and told of one taken port per try.
  local offset
  for i in "${!nats_names[@]}"; do
    alive "${nats_names[$i]}" && continue
    offset=""; [ "$i" = 0 ] || offset=" + $i"
    check_port "${nats_urls[$i]##*:}" "${nats_names[$i]}" "NATS_PORT$offset"
    [ -z "${nats_routes[$i]}" ] || check_port "${nats_routes[$i]}" "${nats_names[$i]} (cluster routes)" "NATS_ROUTE_PORT$offset" 127.0.0.1
  done
  alive api || check_port "$API_PORT" api API_PORT
  for i in 0 1; do
    offset=""; [ "$i" = 0 ] || offset=" + 1"
    alive "xds-$((i + 1))" && continue
    check_port "${XDS_PORTS[$i]}" "xds-$((i + 1))" "XDS_PORT$offset"
    check_port "${XDS_HTTP_PORTS[$i]}" "xds-$((i + 1)) (health)" "XDS_HTTP_PORT$offset"
  done
  alive upstream-a || check_port "$UPSTREAM_A_PORT" upstream-a UPSTREAM_A_PORT
  alive upstream-b || check_port "$UPSTREAM_B_PORT" upstream-b UPSTREAM_B_PORT
  if ! alive envoy; then
    check_port "$ADMIN_PORT" "envoy admin" ENVOY_ADMIN_PORT 127.0.0.1
    held_by_envoys "$LISTENER_PORT" || check_port "$LISTENER_PORT" "envoy listener" LISTENER_PORT
  fi
  if [ "${#TAKEN[@]}" -gt 0 ]; then
    printf '  %s\n' "${TAKEN[@]}" >&2
    die "nothing was started: free those ports, or choose others with the variables named (after make down, if part of the stack runs)"
  fi
  # Kept from now on, like the xDS variant: a node that starts and another that fails must leave
  # make status and make down looking at the cluster.
  echo "$NATS_CLUSTER" >"$RUN/nats-cluster"
  for i in "${!nats_names[@]}"; do start_nats "${nats_names[$i]}" "${nats_urls[$i]##*:}" "${nats_routes[$i]}"; done
  for i in "${!nats_urls[@]}"; do wait_for "nats-server ${nats_urls[$i]##*:}" 15 "${nats_names[$i]}" port_busy "${nats_urls[$i]##*:}"; done
  local joined
  joined="$(IFS=,; echo "${nats_urls[*]}")"

  # Bucket replicas for whichever process creates a bucket first (the replicas create the status bucket too).
  # The stack's own nats-server takes no credentials and no TLS: settings an operator keeps for
  # the nats CLI and another NATS (NATS_USER, NATS_CA, NATS_CONTEXT, …) are not passed on. Nor is
  # ADS over TLS: the stack's Envoy (envoy/bootstrap.yaml) speaks plaintext to the replicas.
  local tls
  for tls in XDS_TLS_CERT XDS_TLS_KEY XDS_TLS_CLIENT_CA; do
    [ -z "${!tls:-}" ] || log "$tls ignored: the stack's Envoy speaks plaintext xDS (README, \"Your own Envoys\", for TLS)"
  done
  local common=(env -u NATS_USER -u NATS_PASSWORD -u NATS_TOKEN -u NATS_CREDS -u NATS_NKEY -u NATS_CA -u NATS_CERT -u NATS_KEY
    -u NATS_CONTEXT -u NATS_JWT -u NATS_SEED -u XDS_TLS_CERT -u XDS_TLS_KEY -u XDS_TLS_CLIENT_CA "NATS_URL=$joined" "LOG_LEVEL=${LOG_LEVEL:-info}" "ENVOYAGE_BUCKET_REPLICAS=$NATS_CLUSTER")
  if ! alive api; then
    start api "${common[@]}" "API_HOST=$BIND" "API_PORT=$API_PORT" \
      "$node" "$ROOT/services/api/dist/src/main.js"
  fi
  for i in 0 1; do
    local n=$((i + 1))
    if ! alive "xds-$n"; then
      start "xds-$n" "${common[@]}" "REPLICA_ID=xds-$n" "XDS_HOST=$BIND" "XDS_PORT=${XDS_PORTS[$i]}" \
        "XDS_HTTP_PORT=${XDS_HTTP_PORTS[$i]}" "LISTENER_ADDRESS=${LISTENER_ADDRESS:-$BIND}" "LISTENER_PORT=$LISTENER_PORT" \
        "NODE=$node" "$ROOT/services/xds/bin/envoyage-xds"
    fi
  done
  wait_for "the API" 30 api http_ok "http://$REACH:$API_PORT/readyz"
  wait_for "xds-1" 30 xds-1 http_ok "http://$REACH:${XDS_HTTP_PORTS[0]}/readyz"
  wait_for "xds-2" 30 xds-2 http_ok "http://$REACH:${XDS_HTTP_PORTS[1]}/readyz"

  local upstream="$ROOT/shared/test-support/dist/src/upstream-main.js"
  alive upstream-a || start upstream-a "$node" "$upstream" --name A --host "$BIND" --port "$UPSTREAM_A_PORT"
  alive upstream-b || start upstream-b "$node" "$upstream" --name B --host "$BIND" --port "$UPSTREAM_B_PORT"

  if ! alive envoy; then
    # envoy/bootstrap.yaml with this stack's ports and ADS variant.
    local bootstrap="$RUN/bootstrap.yaml" api_type=DELTA_GRPC
    [ "$ads" = sotw ] && api_type=GRPC
    # The rendered api_type line says which variant runs.
    # Ports go through placeholders, so a new port that equals another default is not rewritten again.
    sed -e "s/api_type: DELTA_GRPC$/api_type: $api_type # ENVOY_ADS=$ads/" \
      -e "s/port_value: 9901 /port_value: @admin@ /" -e "s/port_value: 9090 /port_value: @xds1@ /" -e "s/port_value: 9091 /port_value: @xds2@ /" \
      -e "s/@admin@/$ADMIN_PORT/" -e "s/@xds1@/${XDS_PORTS[0]}/" -e "s/@xds2@/${XDS_PORTS[1]}/" \
      -e "/port_value: ${XDS_PORTS[0]} \|port_value: ${XDS_PORTS[1]} /s/address: 127.0.0.1/address: $REACH/" \
      "$ROOT/envoy/bootstrap.yaml" >"$bootstrap"
    start envoy envoy -c "$bootstrap" --disable-hot-restart --concurrency 2 -l info
    date +%s >"$RUN/envoy.started"
  fi
  wait_for "Envoy" 30 envoy envoy_ready
  wait_for "Envoy's listener on :$LISTENER_PORT" 15 envoy envoy_listening
  # Sync status is published every half second: up returns once GET /v1/envoys shows Envoy.
  wait_for "Envoy in GET /v1/envoys" 15 envoy envoy_reported
  wait_for "upstream A" 15 upstream-a http_ok "http://$REACH:$UPSTREAM_A_PORT/"
  wait_for "upstream B" 15 upstream-b http_ok "http://$REACH:$UPSTREAM_B_PORT/"
  status
  local at=""
  [ -z "${ENVOYAGE_RUN_DIR:-}" ] || at=" ENVOYAGE_RUN_DIR=$ENVOYAGE_RUN_DIR"
  log "up. Try: make test-add$at && make test-switch$at && make test-remove$at"
}

# start_nats NAME CLIENT_PORT CLUSTER_PORT: one nats-server (its ports checked by up); CLUSTER_PORT empty for a single server.
start_nats() {
  local name="$1" port="$2" cluster="$3"
  alive "$name" && return
  mkdir -p "$RUN/$name"
  # sync_interval: always = every acknowledged write is on disk before the ack.
  {
    echo "server_name: envoyage-$name"
    echo "listen: \"$BIND:$port\""
    echo "jetstream { store_dir: \"$RUN/$name\", sync_interval: always }"
    if [ -n "$cluster" ]; then
      local routes=() i
      for i in $(seq 1 "$NATS_CLUSTER"); do
        [ $((NATS_ROUTE_PORT + i - 1)) = "$cluster" ] || routes+=("\"nats-route://127.0.0.1:$((NATS_ROUTE_PORT + i - 1))\"")
      done
      echo "cluster { name: envoyage, listen: \"127.0.0.1:$cluster\", routes: [$(IFS=,; echo "${routes[*]}")] }"
    fi
  } >"$RUN/$name.conf"
  start "$name" nats-server -c "$RUN/$name.conf"
}

stop_one() {
  local name="$1" f pid
  f="$(pidfile "$name")"
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if alive "$name"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
      log "$name did not stop within 10s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    log "$name stopped"
  fi
  rm -f "$f" "$(startfile "$name")" "$RUN/$name.log-offset"
}

down() {
  [ -d "$RUN" ] || { log "no stack in $RUN: nothing to stop"; return; }
  # Envoy first (it would only log reconnects), NATS last (the services drain to it).
  for name in envoy upstream-a upstream-b xds-1 xds-2 api nats nats-1 nats-2 nats-3 nats-4 nats-5; do stop_one "$name"; done
  rm -f "$RUN/envoy.started" "$RUN/nats-cluster" "$RUN/envoy-ads" "$RUN/bind-address" "$RUN/settings"
  local busy=()
  for port in "$NATS_PORT" "$API_PORT" "${XDS_PORTS[@]}" "${XDS_HTTP_PORTS[@]}" "$LISTENER_PORT" "$ADMIN_PORT" "$UPSTREAM_A_PORT" "$UPSTREAM_B_PORT"; do
    port_busy "$port" && busy+=("$port")
  done
  if [ "${#busy[@]}" -gt 0 ]; then log "note: ports still in use by other programs: ${busy[*]}"; fi
  log "down"
}

# The readiness URL of an HTTP process.
ready_url() {
  case "$1" in
    api) echo "http://$REACH:$API_PORT/readyz" ;;
    xds-1) echo "http://$REACH:${XDS_HTTP_PORTS[0]}/readyz" ;;
    xds-2) echo "http://$REACH:${XDS_HTTP_PORTS[1]}/readyz" ;;
    envoy) echo "http://127.0.0.1:$ADMIN_PORT/ready" ;;
    upstream-a) echo "http://$REACH:$UPSTREAM_A_PORT/" ;;
    upstream-b) echo "http://$REACH:$UPSTREAM_B_PORT/" ;;
  esac
}

# nats-server greets every connection with INFO: one that does not within a second is hung.
nats_answers() {
  if timeout 1 bash -c 'exec 3<>"/dev/tcp/$2/$1" && head -c 4 <&3' _ "$1" "$REACH" 2>/dev/null | grep -q INFO; then
    echo "; ready"
  else
    echo "; not answering"
  fi
}

# "; ready", or what is wrong: a process can run and still not serve (loading, or hung).
readiness() {
  local url code
  case "$1" in
    nats) nats_answers "$NATS_PORT"; return ;;
    nats-*) nats_answers "$((NATS_PORT + ${1#nats-} - 1))"; return ;;
  esac
  url="$(ready_url "$1")"
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)"
  case "$code" in
    200) echo "; ready" ;;
    000) echo "; not answering" ;;
    *) echo "; not ready ($code)" ;;
  esac
}

status() {
  local names=(nats) name stopped=0 unready=0 ready
  [ "$NATS_CLUSTER" = 1 ] || names=($(seq -f "nats-%g" 1 "$NATS_CLUSTER"))
  for name in "${names[@]}" api xds-1 xds-2 upstream-a upstream-b envoy; do
    if alive "$name"; then
      ready="$(readiness "$name")"
      [ "$ready" = "; ready" ] || unready=$((unready + 1))
      printf '  %-11s running (pid %s)%s\n' "$name" "$(cat "$(pidfile "$name")")" "$ready"
    else printf '  %-11s stopped\n' "$name"; stopped=$((stopped + 1)); fi
  done
  cat <<EOF
  API        http://$REACH:$API_PORT   (OpenAPI at /openapi.json)
  Envoy      http://$REACH:$LISTENER_PORT (admin http://127.0.0.1:$ADMIN_PORT)$([ -f "$RUN/envoy-ads" ] && echo ", xDS $(cat "$RUN/envoy-ads")")
  xDS        $REACH:${XDS_PORTS[0]}, $REACH:${XDS_PORTS[1]} (health :${XDS_HTTP_PORTS[0]}, :${XDS_HTTP_PORTS[1]})
  NATS       nats://$REACH:$NATS_PORT$([ "$NATS_CLUSTER" = 1 ] || echo " (cluster of $NATS_CLUSTER: ports $NATS_PORT-$((NATS_PORT + NATS_CLUSTER - 1)), routes 127.0.0.1:$NATS_ROUTE_PORT-$((NATS_ROUTE_PORT + NATS_CLUSTER - 1)))")
  upstreams  A $REACH:$UPSTREAM_A_PORT, B $REACH:$UPSTREAM_B_PORT
EOF
  # Like service managers' status: 0 only when everything runs and is ready, so scripts and probes can ask.
  [ "$stopped" = 0 ] || echo "$stopped process(es) stopped: make up starts them" >&2
  [ "$unready" = 0 ] || echo "$unready process(es) running but not ready or not answering: see make logs" >&2
  [ "$stopped" = 0 ] && [ "$unready" = 0 ] || exit 3
}

logs() {
  [ -d "$LOGS" ] || die "no logs yet: run make up"
  exec tail -n 20 -F "$LOGS"/*.log
}

# Before make restart builds anything: a misspelt name, or no stack, is said at once.
check_restart() {
  case "$1" in
    nats | nats-[1-5] | api | xds-1 | xds-2 | envoy | upstream-a | upstream-b) ;;
    *) die "restart what? P=nats (nats-1 … in a cluster), api, xds-1, xds-2, envoy, upstream-a or upstream-b" ;;
  esac
  any_stack_alive || die "the stack does not run: make up"
  # A NATS name the running stack's mode has (one of the other mode stopped nothing, and went on
  # to make up as if it had restarted something).
  local nodes=1
  [ ! -f "$RUN/nats-cluster" ] || nodes="$(cat "$RUN/nats-cluster")"
  case "$1" in
    nats) [ "$nodes" = 1 ] || die "the stack runs NATS as a cluster of $nodes: P=nats-1 … nats-$nodes" ;;
    nats-*)
      [ "$nodes" != 1 ] || die "the stack runs a single nats-server: P=nats"
      [ "${1#nats-}" -le "$nodes" ] || die "the stack's NATS cluster has $nodes nodes: P=nats-1 … nats-$nodes" ;;
  esac
}

case "${1:-}" in
  up) resolve_settings up; settings; resolve_nats_mode up; resolve_bind up; up ;;
  down) resolve_settings down; settings; resolve_bind down; down ;;
  logs) logs ;;
  status) resolve_settings status; settings; resolve_nats_mode status; resolve_bind status; status ;;
  restart-check) check_restart "${2:-}" ;;
  restart)
    check_restart "${2:-}"
    resolve_settings up; settings; resolve_nats_mode up; resolve_bind up
    stop_one "$2"; up ;;
  *) echo "usage: $0 up|down|logs|status|restart NAME|restart-check NAME" >&2; exit 2 ;;
esac
