// A real upstream HTTP server on loopback that names itself in every response.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Upstream {
  name: string;
  /** Where Envoy reaches it: 127.0.0.1, or the host's name as seen from containers. */
  address: string;
  port: number;
  requests: number;
  close(): Promise<void>;
}

export function upstreamGreeting(name: string): string {
  return `Hello from upstream ${name}\n`;
}

export function createUpstreamServer(name: string, onRequest: () => void = () => {}): Server {
  return createServer((_request, response) => {
    onRequest();
    response.writeHead(200, { "content-type": "text/plain" });
    response.end(upstreamGreeting(name));
  });
}

/** An upstream answering its greeting, on a free port of 127.0.0.1. */
export async function startUpstream(name: string): Promise<Upstream> {
  const upstream: Upstream = { name, address: "127.0.0.1", port: 0, requests: 0, close: async () => {} };
  const server = createUpstreamServer(name, () => upstream.requests++);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  upstream.port = (server.address() as AddressInfo).port;
  upstream.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return upstream;
}
