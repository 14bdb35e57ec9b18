// The whole system for one test file or benchmark, all real: nats-server, the API, two xDS replicas, an Envoy
// connected to both, and two upstreams. Every port is a free loopback port.
import { execFile } from "node:child_process";
import { request, Agent } from "node:http";
import { promisify } from "node:util";
import { startEnvoy, type Envoy } from "./envoy.js";
import { startApi, startXds, type ApiProcess, type XdsProcess } from "./envoyage.js";
import { startNats, type NatsServer } from "./nats.js";
import { startNatsCluster, type NatsCluster } from "./nats-cluster.js";
import { assertPortsFree, freePort } from "./ports.js";
import { findTool } from "./tools.js";
import { startUpstream, type Upstream } from "./upstream.js";
import { waitFor } from "./wait.js";

const run = promisify(execFile);

export interface Stack {
  protocol: "sotw" | "delta";
  /** The single nats-server, unless the stack runs on a cluster. */
  nats: NatsServer | undefined;
  cluster: NatsCluster | undefined;
  /** What NATS_URL the services were given. */
  natsUrl: string;
  api: ApiProcess;
  replicas: XdsProcess[];
  envoy: Envoy;
  upstreams: { A: Upstream; B: Upstream };
  listenerPort: number;
  /** A request through Envoy with the given Host header. */
  get(host: string): Promise<{ status: number; body: string }>;
  /** Polls through Envoy until `host` answers `expected` (a body or a status). */
  until(host: string, expected: string | number, timeoutMs?: number): Promise<void>;
  /** The API, as JSON. */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** The real nats CLI against the stack's server. */
  nats_(...args: string[]): Promise<string>;
  /** Starts replica `index` again on its xDS port (after it was stopped or killed) and waits until ready. */
  restartReplica(index: number): Promise<XdsProcess>;
  /** The replica an Envoy stream is open on, if any (by each replica's /status). */
  connectedReplica(): Promise<number | undefined>;
  stop(): Promise<void>;
}

const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function get(port: number, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/", headers: { host }, agent, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("request through Envoy timed out")));
    req.on("error", reject);
    req.end();
  });
}

export function record(upstream: Upstream, domains = ["web.example.com"]) {
  return { domains, endpoints: [{ address: "127.0.0.1", port: upstream.port }] };
}

export interface StackOptions {
  /** How Envoy talks ADS: state of the world or delta. */
  protocol?: "sotw" | "delta";
  /** Extra environment for the xDS replicas. */
  xdsEnv?: Record<string, string>;
  /** Run NATS as a JetStream cluster of this many nodes, the bucket replicated on all of them. */
  natsCluster?: number;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const natsCli = findTool("nats");
  const listenerPort = await freePort();
  const cluster = options.natsCluster ? await startNatsCluster(options.natsCluster) : undefined;
  const nats = cluster ? undefined : await startNats();
  const natsUrl = cluster?.urls ?? nats!.url;
  const api = await startApi({ natsUrl, env: cluster ? { ENVOYAGE_BUCKET_REPLICAS: String(options.natsCluster) } : {} });
  const replicas = [
    await startXds({ natsUrl, listenerPort, env: options.xdsEnv }),
    await startXds({ natsUrl, listenerPort, env: options.xdsEnv }),
  ];
  await Promise.all(replicas.map((r) => r.ready()));
  const upstreams = { A: await startUpstream("A"), B: await startUpstream("B") };
  const envoy = await startEnvoy({ xdsPorts: replicas.map((r) => r.xdsPort), protocol: options.protocol });

  const stack: Stack = {
    protocol: options.protocol ?? "sotw",
    nats,
    cluster,
    natsUrl,
    api,
    replicas,
    envoy,
    upstreams,
    listenerPort,
    get: (host) => get(listenerPort, host),
    async until(host, expected, timeoutMs = 10_000) {
      await waitFor(
        `${host} to answer ${JSON.stringify(expected)} through Envoy`,
        async () => {
          const response = await get(listenerPort, host);
          const matches = typeof expected === "number" ? response.status === expected : response.body === expected;
          return matches ? true : undefined;
        },
        { timeoutMs, intervalMs: 1 },
      );
    },
    async call(method, path, body) {
      const response = await fetch(`${api.url}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    },
    async restartReplica(index) {
      const replica = await startXds({ natsUrl, listenerPort, xdsPort: replicas[index]!.xdsPort, env: options.xdsEnv });
      replicas[index] = replica;
      await replica.ready();
      return replica;
    },
    async connectedReplica() {
      for (const [index, replica] of replicas.entries()) {
        if (!replica.process.running) continue;
        const status = (await (await fetch(`${replica.statusUrl}/status`)).json()) as { streams: Record<string, number> };
        if (Object.values(status.streams).some((count) => count > 0)) return index;
      }
      return undefined;
    },
    async nats_(...args) {
      const { stdout } = await run(natsCli, ["-s", natsUrl, ...args]);
      return stdout;
    },
    async stop() {
      const natsPorts = cluster ? cluster.nodes.map((n) => n.port) : [nats!.port];
      const ports = [listenerPort, api.port, ...natsPorts, ...replicas.flatMap((r) => [r.xdsPort, r.httpPort]), upstreams.A.port, upstreams.B.port];
      await envoy.stop();
      for (const replica of replicas) await replica.stop();
      await api.stop();
      if (cluster) await cluster.stop();
      else await nats!.stop();
      await upstreams.A.close();
      await upstreams.B.close();
      agent.destroy();
      await assertPortsFree(ports);
    },
  };
  // Envoy is up once its listener answers (404: no services yet).
  await stack.until("nothing.example.com", 404, 30_000);
  return stack;
}
