#!/usr/bin/env bash
# Regenerates the ts-proto TypeScript for the Envoy xDS API.
#
#   generate.sh OUT_DIR           write the generated code to OUT_DIR (replacing it)
#   generate.sh --check OUT_DIR   generate into a temporary folder and fail if OUT_DIR differs
#
# Sources: the proto closure that the npm package @grpc/grpc-js-xds ships under deps/ (Envoy API,
# xds, googleapis, protoc-gen-validate). Compiler: buf (npm @bufbuild/buf) driving the local
# ts-proto plugin, so no protoc is needed. Every version is pinned in package.json.
set -euo pipefail

check=false
if [ "${1:-}" = "--check" ]; then check=true; shift; fi
out="${1:?usage: generate.sh [--check] OUT_DIR}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modules="$(cd "$here/../.." && pwd)/node_modules"
deps="$modules/@grpc/grpc-js-xds/deps"
buf="$modules/.bin/buf"
plugin="$modules/.bin/protoc-gen-ts_proto"
for f in "$deps" "$buf" "$plugin"; do
  [ -e "$f" ] || { echo "generate.sh: $f is missing; run npm ci first" >&2; exit 1; }
done

# The xDS API surface Envoyage uses (their imports come along).
roots=(
  envoy/service/discovery/v3/ads.proto
  envoy/config/listener/v3/listener.proto
  envoy/config/route/v3/route.proto
  envoy/config/cluster/v3/cluster.proto
  envoy/config/endpoint/v3/endpoint.proto
  envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto
  envoy/extensions/filters/http/router/v3/router.proto
  envoy/service/status/v3/csds.proto
  envoy/service/secret/v3/sds.proto
  envoy/extensions/transport_sockets/tls/v3/tls.proto
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/protos"
cp -r "$deps"/envoy-api "$deps"/xds "$deps"/googleapis "$deps"/protoc-gen-validate "$work/protos/"
# The bundled validate.proto predates the envoy protos: it lacks `ignore_empty`, which buf then
# rejects. Validation annotations do not affect the generated types, so drop the option here,
# in the temporary copy only.
find "$work/protos" -name '*.proto' -exec sed -i 's/ ignore_empty: true//g' {} +

cat > "$work/buf.yaml" <<YAML
version: v2
modules:
  - path: protos/envoy-api
  - path: protos/xds
  - path: protos/googleapis
  - path: protos/protoc-gen-validate
YAML
cat > "$work/buf.gen.yaml" <<YAML
version: v2
plugins:
  - local: $plugin
    out: generated
    opt:
      - esModuleInterop=true
      - outputServices=grpc-js
      - importSuffix=.js
      - env=node
YAML

paths=()
for r in "${roots[@]}"; do paths+=(--path "protos/envoy-api/$r"); done
(cd "$work" && "$buf" generate "${paths[@]}")

if $check; then
  if diff -r -q "$work/generated" "$here/$out" >/dev/null; then
    echo "generated code in $out is up to date"
  else
    diff -r -q "$work/generated" "$here/$out" | head -20 >&2
    echo "generated code in $out is stale: run npm run proto:generate" >&2
    exit 1
  fi
else
  rm -rf "${here:?}/$out"
  mkdir -p "$(dirname "$here/$out")"
  cp -r "$work/generated" "$here/$out"
  echo "wrote $(find "$here/$out" -name '*.ts' | wc -l) files ($(du -sh "$here/$out" | cut -f1)) to $out"
fi
