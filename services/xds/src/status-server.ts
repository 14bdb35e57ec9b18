// Liveness and readiness over plain HTTP, for orchestrators and `make` targets.
//   GET /healthz  200 while the process runs
//   GET /readyz   200 once the registry is loaded and streams are served, else 503
import { createServer, type Server } from "node:http";

export interface StatusSource {
  ready(): boolean;
  details(): Record<string, unknown>;
}

export function startStatusServer(host: string, port: number, source: StatusSource): Promise<Server> {
  const server = createServer((request, response) => {
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.method !== "GET") return send(405, { error: { code: "method_not_allowed", message: "use GET" } });
    switch (request.url) {
      case "/healthz":
        return send(200, { status: "ok" });
      case "/readyz":
        return source.ready() ? send(200, { status: "ready", ...source.details() }) : send(503, { status: "loading", ...source.details() });
      default:
        return send(404, { error: { code: "not_found", message: "try /healthz or /readyz" } });
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
