// Health, readiness and status over plain HTTP, for orchestrators, operators and tests.
//   GET /healthz  200 while the process runs
//   GET /readyz   200 once the registry is loaded and streams are served, else 503
//   GET /status   the replica's state (replica-status.ts)
//   GET /metrics  Prometheus metrics (metrics.ts)
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface StatusSource {
  ready(): boolean;
  status(): object;
  metrics: Registry;
}

export function startStatusServer(host: string, port: number, source: StatusSource): Promise<Server> {
  const server = createServer((request, response) => {
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.method !== "GET") return send(405, { error: { code: "method_not_allowed", message: "use GET" } });
    if (request.url === "/metrics") {
      void source.metrics.metrics().then(
        (text) => {
          response.writeHead(200, { "content-type": source.metrics.contentType });
          response.end(text);
        },
        (error: Error) => send(500, { error: { code: "internal", message: error.message } }),
      );
      return;
    }
    switch (request.url) {
      case "/healthz":
        return send(200, { status: "ok" });
      case "/readyz":
        return source.ready() ? send(200, { status: "ready" }) : send(503, { status: "loading" });
      case "/status":
        return send(200, source.status());
      default:
        return send(404, { error: { code: "not_found", message: "try /healthz, /readyz, /status or /metrics" } });
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
