// A Replica in the test's own process against a real nats-server, and a NATS client on the same
// bucket: for tests that look at the replica's registry and snapshot store directly.
import { cp, rm } from "node:fs/promises";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { KV } from "@nats-io/kv";
import { createLogger, NatsLink, openBucket, registrySettings } from "@envoyage/registry";
import { startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import { Replica, type ReplicaOptions } from "../../src/replica.js";
import { CLUSTER_TYPE } from "../../src/ads/resources.js";
import { SnapshotStore } from "../../src/snapshot.js";

export interface InProcessReplica {
  nats: NatsServer;
  replica: Replica;
  store: SnapshotStore;
  /** The registry bucket, as a CLI user writes it. */
  kv: KV;
  /** Replaces nats-server's store with a backup's (bucketBackup) and starts it again: a restore. */
  restore(backup: NatsServer): Promise<void>;
  stop(): Promise<void>;
}

/** A stopped nats-server whose store holds the registry bucket as `write` left it: a backup. */
export async function bucketBackup(write: (kv: KV) => Promise<void>): Promise<NatsServer> {
  const backup = await startNats();
  const nc = await connect({ servers: backup.url });
  await write(await openBucket(nc, { bucket: "envoyage", create: true, timeoutMs: 2000 }));
  await nc.close();
  await backup.stop();
  return backup;
}

/** The names of the clusters a store serves, sorted. */
export function clusterNames(store: SnapshotStore): string[] {
  return [...store.resources(CLUSTER_TYPE).values()].map((resource) => resource.name).sort();
}

/** When the replica commits; by default as one an Envoy is connected to (no standby delay). */
export type CommitTiming = Pick<ReplicaOptions, "batch" | "served">;

/**
 * Starts nats-server, the bucket and a ready replica serving `store`, logging to `logger`;
 * `seed` writes to the bucket before the replica starts.
 */
export async function startInProcessReplica(
  store: SnapshotStore,
  logger: Logger = createLogger("xds", "silent"),
  seed: (kv: KV, nc: NatsConnection) => Promise<void> = async () => {},
  timing: CommitTiming = { batch: { windowMs: 50, burst: 20, standbyMs: 0 }, served: () => true },
): Promise<InProcessReplica> {
  const nats: NatsServer = await startNats();
  const nc: NatsConnection = await connect({ servers: nats.url });
  const kv = await openBucket(nc, { bucket: "envoyage", create: true, timeoutMs: 2000 });
  await seed(kv, nc);
  const link = new NatsLink({ servers: [nats.url], name: "in-process-replica", logger });
  const replica = new Replica({
    link,
    settings: registrySettings({ NATS_URL: nats.url }),
    logger,
    store,
    ...timing,
  });
  void replica.start();
  await waitFor("the replica to be ready", () => (replica.ready ? true : undefined));
  return {
    nats,
    replica,
    store,
    kv,
    async restore(backup) {
      await nats.stop();
      const jetstream = join(nats.storeDir, "jetstream");
      await rm(jetstream, { recursive: true, force: true });
      await cp(join(backup.storeDir, "jetstream"), jetstream, { recursive: true });
      await nats.restart();
    },
    async stop() {
      await replica.stop();
      await link.close();
      await nc.close();
      await nats.stop();
    },
  };
}
