// A real 3-node NATS JetStream cluster on loopback, each node with file storage and
// sync_interval: always, for tests that kill nodes (the stream leader among them).
import { mkdtemp, mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { freePort } from "./ports.js";
import { ManagedProcess, type Lifecycle } from "./process.js";
import { findTool } from "./tools.js";
import { waitFor } from "./wait.js";

export interface ClusterNode {
  name: string;
  url: string;
  port: number;
  process: Lifecycle;
  restart(): Promise<void>;
  kill(): Promise<void>;
}

export interface NatsCluster {
  nodes: ClusterNode[];
  /** All client URLs, comma-separated, as NATS_URL takes them. */
  urls: string;
  /** The node leading `stream` (e.g. KV_envoyage). */
  leaderOf(stream: string): Promise<ClusterNode>;
  stop(): Promise<void>;
}

export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  const binary = findTool("nats-server");
  const dir = await mkdtemp(join(tmpdir(), "envoyage-nats-cluster-"));
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), cluster: await freePort() })));
  const nodes: ClusterNode[] = [];
  for (const [i, { client, cluster }] of ports.entries()) {
    const name = `n${i + 1}`;
    const store = join(dir, name);
    await mkdir(store, { recursive: true });
    const config = join(dir, `${name}.conf`);
    const routes = ports.filter((_, j) => j !== i).map((p) => `"nats-route://127.0.0.1:${p.cluster}"`).join(", ");
    await writeFile(
      config,
      [
        `server_name: "${name}"`,
        `listen: "127.0.0.1:${client}"`,
        `jetstream { store_dir: "${store}", sync_interval: always }`,
        `cluster { name: "envoyage", listen: "127.0.0.1:${cluster}", routes: [${routes}] }`,
      ].join("\n"),
    );
    const launch = () => ManagedProcess.start({ name, command: binary, args: ["-c", config] });
    const node: ClusterNode = {
      name,
      url: `nats://127.0.0.1:${client}`,
      port: client,
      process: launch(),
      async restart() {
        node.process = launch();
        await waitFor(`${name} to listen`, () => (node.process.output().includes("Server is ready") ? true : undefined));
      },
      async kill() {
        await node.process.kill();
      },
    };
    nodes.push(node);
  }
  const urls = nodes.map((n) => n.url).join(",");
  // Ready once a stream can be placed on every node: a meta leader alone is not enough, as the
  // peers that have not joined yet make a replicated bucket fail ("no suitable peers for placement").
  // Until then the probe throws, and waitFor asks again.
  await waitFor(
    `the JetStream cluster to place a stream on all ${size} nodes`,
    async () => {
      const nc = await connect({ servers: urls.split(","), timeout: 1000 });
      try {
        const jsm = await jetstreamManager(nc, { timeout: 1000 });
        await jsm.streams.add({ name: "cluster_ready", subjects: ["cluster.ready"], num_replicas: size, storage: StorageType.Memory });
        await jsm.streams.delete("cluster_ready");
        return true;
      } finally {
        await nc.close();
      }
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  return {
    nodes,
    urls,
    // After a node dies the cluster may still be electing (the meta leader too): ask until a
    // stream leader is known.
    async leaderOf(stream) {
      return waitFor(
        `a leader for ${stream}`,
        async () => {
          const nc = await connect({ servers: urls.split(","), timeout: 1000 });
          try {
            const info = await (await jetstreamManager(nc, { timeout: 2000 })).streams.info(stream);
            return nodes.find((n) => n.name === info.cluster?.leader);
          } finally {
            await nc.close();
          }
        },
        { timeoutMs: 20_000, intervalMs: 200 },
      );
    },
    async stop() {
      for (const node of nodes) await node.process.stop();
    },
  };
}
