// Minimal HTTP client for benchmarks: keep-alive, no fetch machinery, so the measurement is of
// the system and not of the client.
import { Agent, request } from "node:http";

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

export function httpRequest(
  port: number,
  options: { method?: string; path?: string; host?: string; body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (options.host) headers["host"] = options.host;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    const req = request({ host: "127.0.0.1", port, method: options.method ?? "GET", path: options.path ?? "/", headers, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Requests through Envoy until `host` answers `body`; resolves with the time it was seen. */
export async function seen(envoyPort: number, host: string, body: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  for (;;) {
    signal?.throwIfAborted();
    try {
      const response = await httpRequest(envoyPort, { host });
      if (response.body === body) return performance.now();
      last = `${response.status} ${response.body}`;
    } catch (error) {
      last = (error as Error).message; // Envoy's listener is not up yet
    }
    if (performance.now() > deadline) throw new Error(`${host} never answered ${JSON.stringify(body)} (last: ${last})`);
  }
}

/** One request through Envoy: does `host` answer `body`? */
export async function isRouted(envoyPort: number, host: string, body: string): Promise<boolean> {
  try {
    return (await httpRequest(envoyPort, { host })).body === body;
  } catch {
    return false;
  }
}
