// The project's own services as real processes: the API and xDS replicas, started from their
// build output with the test's ports.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { ManagedProcess, type Lifecycle } from "./process.js";
import { REPO_ROOT } from "./tools.js";
import { waitFor } from "./wait.js";

function entryPoint(service: "api" | "xds"): string {
  const file = join(REPO_ROOT, "services", service, "dist", "src", "main.js");
  if (!existsSync(file)) throw new Error(`${file} is missing: build first (npm run build)`);
  return file;
}

/** The replica starts through its launcher, which sets the runtime flags it is measured with. */
const XDS_LAUNCHER = join(REPO_ROOT, "services", "xds", "bin", "envoyage-xds");

async function healthy(url: string): Promise<true | undefined> {
  const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
  return response.ok ? true : undefined;
}

export interface ServiceProcess {
  process: Lifecycle;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export interface ApiProcess extends ServiceProcess {
  url: string;
  port: number;
}

export async function startApi(options: {
  natsUrl: string;
  port?: number;
  env?: Record<string, string>;
  /** What to wait for: ready (NATS and the bucket bound, the default) or only listening. */
  until?: "ready" | "listening";
}): Promise<ApiProcess> {
  const port = options.port ?? (await freePort());
  const child = ManagedProcess.start({
    name: "api",
    command: process.execPath,
    args: [entryPoint("api")],
    env: { NATS_URL: options.natsUrl, API_HOST: "127.0.0.1", API_PORT: String(port), LOG_LEVEL: "info", ...options.env },
  });
  const url = `http://127.0.0.1:${port}`;
  // Ready, not just listening: connected to NATS with the bucket bound, so the first write lands.
  const listening = options.until === "listening";
  await waitFor(listening ? "the API to listen" : "the API to be ready", () => {
    if (!child.running) throw new Error(`api exited:\n${child.output()}`);
    return healthy(`${url}/${listening ? "healthz" : "readyz"}`);
  });
  return { process: child, url, port, stop: async () => void (await child.stop()), kill: async () => void (await child.kill()) };
}

/** A replica's GET /status (services/xds/src/replica-status.ts), typed as far as the caller reads it. */
export async function replicaStatus<T>(replica: { statusUrl: string }): Promise<T> {
  return (await (await fetch(`${replica.statusUrl}/status`)).json()) as T;
}

export interface XdsProcess extends ServiceProcess {
  xdsPort: number;
  httpPort: number;
  statusUrl: string;
  /** Waits until the replica has loaded the registry and serves Envoy. */
  ready(timeoutMs?: number): Promise<void>;
}

export async function startXds(options: {
  natsUrl: string;
  listenerPort: number;
  xdsPort?: number;
  env?: Record<string, string>;
}): Promise<XdsProcess> {
  const xdsPort = options.xdsPort ?? (await freePort());
  const httpPort = await freePort();
  entryPoint("xds");
  const child = ManagedProcess.start({
    name: `xds:${xdsPort}`,
    command: XDS_LAUNCHER,
    args: [],
    env: {
      NODE: process.execPath,
      NATS_URL: options.natsUrl,
      XDS_HOST: "127.0.0.1",
      XDS_PORT: String(xdsPort),
      XDS_HTTP_PORT: String(httpPort),
      LISTENER_ADDRESS: "127.0.0.1",
      LISTENER_PORT: String(options.listenerPort),
      REPLICA_ID: `xds-${xdsPort}`,
      LOG_LEVEL: "info",
      ...options.env,
    },
  });
  const statusUrl = `http://127.0.0.1:${httpPort}`;
  await waitFor(`xDS replica ${xdsPort} to listen`, () => {
    if (!child.running) throw new Error(`xds exited:\n${child.output()}`);
    return healthy(`${statusUrl}/healthz`);
  });
  return {
    process: child,
    xdsPort,
    httpPort,
    statusUrl,
    ready: (timeoutMs = 10_000) =>
      waitFor(`xDS replica ${xdsPort} to be ready`, () => healthy(`${statusUrl}/readyz`), { timeoutMs }).then(() => undefined),
    stop: async () => void (await child.stop()),
    kill: async () => void (await child.kill()),
  };
}
