#!/usr/bin/env node
// The local stack's demo upstreams: `envoyage-upstream --name A --port 5678`.
import { parseArgs } from "node:util";
import { createUpstreamServer } from "./upstream.js";

const { values } = parseArgs({
  options: { name: { type: "string" }, port: { type: "string" }, host: { type: "string", default: "127.0.0.1" } },
});
if (!values.name || !values.port) {
  console.error("usage: envoyage-upstream --name A --port 5678 [--host 127.0.0.1]");
  process.exit(2);
}
const server = createUpstreamServer(values.name);
server.listen(Number(values.port), values.host, () => {
  console.log(`upstream ${values.name} listening on ${values.host}:${values.port}`);
});
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
