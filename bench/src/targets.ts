// The control planes under comparison, behind one interface: an Envoyage replica (fed through a
// real NATS bucket) and the go-control-plane peer (fed through its control endpoint), both
// serving the same resources from the same records.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { promisify } from "node:util";
import { Kvm, type KV } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { BUCKET_HISTORY, claimKey, encodeRecord, serviceKey, type ServiceRecord } from "@envoyage/registry";
import { freePort, ManagedProcess, REPO_ROOT, startNats, startXds, waitFor, type NatsServer, type XdsProcess } from "@envoyage/test-support";
import { httpRequest } from "./http.js";

const run = promisify(execFile);
export type Registry = Record<string, ServiceRecord>;

export interface Target {
  name: string;
  /** ADS port. */
  port: number;
  /** The process whose CPU and memory are measured. */
  pid: number;
  /** Replaces what is served and waits until the target serves it. */
  load(registry: Registry): Promise<void>;
  /** One service changes; resolves once the change was handed to the target. */
  change(name: string, record: ServiceRecord): Promise<void>;
  stop(): Promise<void>;
}

/** Writes in flight at once while filling a bucket: enough to keep NATS busy, few enough that none times out. */
const FILL_WINDOW = 256;

/** The bucket as the API leaves it: every record, and the claim of each of its domains. */
export async function fillBucket(kv: KV, registry: Registry): Promise<void> {
  const writes = Object.entries(registry).flatMap(([name, record]) => [
    () => kv.put(serviceKey(name), encodeRecord(record)),
    ...record.domains.map((domain) => () => kv.put(claimKey(domain), name)),
  ]);
  let next = 0;
  const writer = async () => {
    while (next < writes.length) await writes[next++]!();
  };
  await Promise.all(Array.from({ length: FILL_WINDOW }, writer));
}

export async function envoyage(): Promise<Target> {
  const nats: NatsServer = await startNats();
  const nc: NatsConnection = await connect({ servers: nats.url });
  const kv: KV = await new Kvm(nc).create("envoyage", { history: BUCKET_HISTORY });
  let replica: XdsProcess | undefined;
  const target: Target = {
    name: "Envoyage",
    port: 0,
    pid: 0,
    async load(registry) {
      await fillBucket(kv, registry);
      if (!replica) {
        replica = await startXds({ natsUrl: nats.url, listenerPort: 10000, env: { LOG_LEVEL: "warn" } });
        await replica.ready(120_000);
        target.port = replica.xdsPort;
        target.pid = replica.process instanceof ManagedProcess ? replica.process.pid : 0;
      }
      const last = (await kv.status()).streamInfo.state.last_seq;
      await waitFor("the replica to apply the registry", async () => {
        const status = (await (await fetch(`${replica!.statusUrl}/status`)).json()) as { revision: number };
        return status.revision >= last ? true : undefined;
      }, { timeoutMs: 120_000 });
    },
    async change(name, record) {
      await kv.put(serviceKey(name), encodeRecord(record));
    },
    async stop() {
      await replica?.stop();
      await nc.close();
      await nats.stop();
    },
  };
  return target;
}

let peerBinary: Promise<string> | undefined;

/** Builds the go-control-plane peer once per run, from the Go module proxy. */
function buildPeer(): Promise<string> {
  peerBinary ??= (async () => {
    const out = `${REPO_ROOT}.bench/go-control-plane-peer`;
    await mkdir(`${REPO_ROOT}.bench`, { recursive: true });
    try {
      await run("go", ["build", "-o", out, "."], { cwd: `${REPO_ROOT}bench/peers/go-control-plane`, env: { ...process.env, GOFLAGS: "-mod=mod" } });
    } catch (error) {
      throw new Error(`cannot build the go-control-plane peer (is Go installed, the Go module proxy reachable?): ${(error as Error).message}`);
    }
    return out;
  })();
  return peerBinary;
}

export async function goControlPlane(cache: "snapshot" | "linear", listenerPort = 10000): Promise<Target> {
  const binary = await buildPeer();
  const [xdsPort, httpPort] = [await freePort(), await freePort()];
  const child = ManagedProcess.start({
    name: `go-control-plane (${cache})`,
    command: binary,
    args: ["-xds-port", String(xdsPort), "-http-port", String(httpPort), "-listener-port", String(listenerPort), "-cache", cache],
  });
  await waitFor("the peer to listen", async () => ((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).ok ? true : undefined));
  let registry: Registry = {};
  const put = async () => {
    const response = await httpRequest(httpPort, { method: "PUT", path: "/registry", body: JSON.stringify(registry) });
    if (response.status >= 300) throw new Error(`the peer refused the registry: ${response.status} ${response.body}`);
  };
  return {
    name: `go-control-plane ${cache === "snapshot" ? "SnapshotCache" : "LinearCache"}`,
    port: xdsPort,
    pid: child.pid,
    async load(next) {
      registry = { ...next };
      await put();
    },
    async change(name, record) {
      // What an integration does on a change: hand the cache the new state.
      registry = { ...registry, [name]: record };
      await put();
    },
    async stop() {
      await child.stop();
    },
  };
}
