// The whole system for one test file or benchmark, all real: nats-server, the API, two xDS replicas, an Envoy
// connected to both, and two upstreams. Every port is a free loopback port.
import { execFile } from "node:child_process";
import { request, Agent } from "node:http";
import { promisify } from "node:util";
import { startEnvoy, type Envoy } from "./envoy.js";
import { replicaStatus, startApi, startXds, type ApiProcess, type XdsProcess } from "./envoyage.js";
import { startNats, type NatsServer } from "./nats.js";
import { startNatsCluster, type NatsCluster } from "./nats-cluster.js";
import { startContainerParts } from "./containers.js";
import { assertPortsFree, freePort } from "./ports.js";
import { findTool } from "./tools.js";
import { startUpstream, upstreamGreeting, type Upstream } from "./upstream.js";
import { waitFor } from "./wait.js";

const run = promisify(execFile);

export interface Stack extends Omit<StackParts, "teardown"> {
  /** A request through Envoy with the given Host header. */
  get(host: string): Promise<{ status: number; body: string }>;
  /** Polls through Envoy until `host` answers `expected` (a body or a status). */
  until(host: string, expected: string | number, timeoutMs?: number): Promise<void>;
  /** The API, as JSON. */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** The real nats CLI against the stack's server. */
  natsCli(...args: string[]): Promise<string>;
  /** The replica an Envoy stream is open on, if any (by each replica's /status). */
  connectedReplica(): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** GET / through an Envoy listener on 127.0.0.1:port, for the virtual host `host`. */
export function getThroughEnvoy(agent: Agent, port: number, host: string): Promise<{ status: number; body: string }> {
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
  return { domains, endpoints: [{ address: upstream.address, port: upstream.port }] };
}

export interface StackOptions {
  /** How Envoy talks ADS: state of the world or delta. */
  protocol?: "sotw" | "delta";
  /** Extra environment for the xDS replicas. */
  xdsEnv?: Record<string, string>;
  /** Run NATS as a JetStream cluster of this many nodes, the bucket replicated on all of them. */
  natsCluster?: number;
  /**
   * A single nats-server that authenticates clients or requires TLS: its extra config, and the
   * NATS_* settings the API, the replicas and the nats CLI (which reads the same ones) connect with.
   */
  natsAccess?: { config: string; env: Record<string, string> };
}

/** What a stack implementation starts; assembleStack adds the behaviour both share. */
export interface StackParts {
  protocol: "sotw" | "delta";
  /** The single nats-server, unless the stack runs on a cluster. */
  nats: NatsServer | undefined;
  cluster: NatsCluster | undefined;
  /** What NATS_URL the services were given. */
  natsUrl: string;
  /** The NATS_* credentials and TLS settings the services were given (StackOptions.natsAccess). */
  natsEnv?: Record<string, string>;
  api: ApiProcess;
  replicas: XdsProcess[];
  envoy: Envoy;
  upstreams: { A: Upstream; B: Upstream };
  listenerPort: number;
  /** Starts replica `index` again on its xDS port (after it was stopped or killed) and waits until ready. */
  restartReplica(index: number): Promise<XdsProcess>;
  /** Stops everything; resolves with host ports that must be free afterwards. */
  teardown(): Promise<number[]>;
}

/**
 * Starts the stack as local processes, or in containers when ENVOYAGE_TEST_STACK=containers
 * (testcontainers; needs a Docker engine). The same tests drive either.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const kind = process.env["ENVOYAGE_TEST_STACK"] ?? "processes";
  if (kind !== "processes" && kind !== "containers") {
    throw new Error(`ENVOYAGE_TEST_STACK must be "processes" or "containers", got "${kind}"`);
  }
  if (kind === "containers" && options.natsAccess) {
    throw new Error("StackOptions.natsAccess is for the process stack only");
  }
  // Found before anything starts: a missing CLI found after would leave the parts running.
  const natsPath = findTool("nats");
  const stack = assembleStack(kind === "containers" ? await startContainerParts(options) : await startProcessParts(options), natsPath);
  // Envoy is up once its listener answers (404: no services yet).
  return stoppedOnFailure(stack, () => stack.until("nothing.example.com", 404, 30_000));
}

/** A stack where web.example.com already answers from upstream A, as most failure tests start. */
export async function startStackServingWeb(options: StackOptions = {}): Promise<Stack> {
  const stack = await startStack(options);
  return stoppedOnFailure(stack, async () => {
    await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
    await stack.until("web.example.com", upstreamGreeting("A"));
  });
}

/** Runs the last steps of a start; if they fail, stops the stack first, so no process outlives the test. */
async function stoppedOnFailure(stack: Stack, steps: () => Promise<void>): Promise<Stack> {
  try {
    await steps();
    return stack;
  } catch (error) {
    await stack.stop().catch(() => undefined);
    throw error;
  }
}

/**
 * Runs `start` with a list to register each started part's stop in; if it fails, stops what was
 * started (newest first) before failing: a process left running would keep the test file from
 * ever ending.
 */
async function startingParts<T>(start: (started: (() => Promise<unknown>)[]) => Promise<T>): Promise<T> {
  const started: (() => Promise<unknown>)[] = [];
  try {
    return await start(started);
  } catch (error) {
    for (const stop of started.reverse()) await stop().catch(() => undefined);
    throw error;
  }
}

async function startProcessParts(options: StackOptions): Promise<StackParts> {
  return startingParts((started) => startProcessPartsInto(options, started));
}

async function startProcessPartsInto(options: StackOptions, started: (() => Promise<unknown>)[]): Promise<StackParts> {
  const part = <T>(value: T, stop: (value: T) => Promise<unknown>): T => {
    started.push(() => stop(value));
    return value;
  };
  const listenerPort = await freePort();
  const cluster = options.natsCluster ? part(await startNatsCluster(options.natsCluster), (c) => c.stop()) : undefined;
  const nats = cluster ? undefined : part(await startNats({ config: options.natsAccess?.config }), (n) => n.stop());
  const natsUrl = cluster?.urls ?? nats!.url;
  const natsEnv = options.natsAccess?.env ?? {};
  // Buckets on a cluster are replicated, whichever process creates them.
  const serviceEnv: Record<string, string> = { ...natsEnv, ...(cluster ? { ENVOYAGE_BUCKET_REPLICAS: String(options.natsCluster) } : {}) };
  const xdsEnv = { ...serviceEnv, ...options.xdsEnv };
  const api = part(await startApi({ natsUrl, env: serviceEnv }), (a) => a.stop());
  const replicas: XdsProcess[] = [];
  for (let i = 0; i < 2; i++) replicas.push(part(await startXds({ natsUrl, listenerPort, env: xdsEnv }), (r) => r.stop()));
  await Promise.all(replicas.map((r) => r.ready()));
  const upstreams = {
    A: part(await startUpstream("A"), (u) => u.close()),
    B: part(await startUpstream("B"), (u) => u.close()),
  };
  const envoy = part(await startEnvoy({ xdsPorts: replicas.map((r) => r.xdsPort), protocol: options.protocol }), (e) => e.stop());
  return {
    protocol: options.protocol ?? "sotw",
    nats,
    cluster,
    natsUrl,
    natsEnv,
    api,
    replicas,
    envoy,
    upstreams,
    listenerPort,
    async restartReplica(index) {
      const replica = await startXds({ natsUrl, listenerPort, xdsPort: replicas[index]!.xdsPort, env: xdsEnv });
      replicas[index] = replica;
      await replica.ready();
      return replica;
    },
    async teardown() {
      const natsPorts = cluster ? cluster.nodes.map((n) => n.port) : [nats!.port];
      const ports = [listenerPort, api.port, ...natsPorts, ...replicas.flatMap((r) => [r.xdsPort, r.httpPort]), upstreams.A.port, upstreams.B.port];
      await envoy.stop();
      for (const replica of replicas) await replica.stop();
      await api.stop();
      if (cluster) await cluster.stop();
      else await nats!.stop();
      await upstreams.A.close();
      await upstreams.B.close();
      return ports;
    },
  };
}

function assembleStack(parts: StackParts, natsPath: string): Stack {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const stack: Stack = {
    ...parts,
    get: (host) => getThroughEnvoy(agent, parts.listenerPort, host),
    async until(host, expected, timeoutMs = 10_000) {
      await waitFor(
        `${host} to answer ${JSON.stringify(expected)} through Envoy`,
        async () => {
          const response = await getThroughEnvoy(agent, parts.listenerPort, host);
          const matches = typeof expected === "number" ? response.status === expected : response.body === expected;
          return matches ? true : undefined;
        },
        { timeoutMs, intervalMs: 1 },
      );
    },
    async call(method, path, body) {
      const response = await fetch(`${parts.api.url}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    },
    async natsCli(...args) {
      const { stdout } = await run(natsPath, ["-s", parts.natsUrl, ...args], { env: { ...process.env, ...parts.natsEnv } });
      return stdout;
    },
    restartReplica: (index) => parts.restartReplica(index),
    async connectedReplica() {
      for (const [index, replica] of parts.replicas.entries()) {
        if (!replica.process.running) continue;
        const status = await replicaStatus<{ streams: Record<string, number> }>(replica);
        if (Object.values(status.streams).some((count) => count > 0)) return index;
      }
      return undefined;
    },
    async stop() {
      agent.destroy();
      await assertPortsFree(await parts.teardown());
    },
  };
  return stack;
}
