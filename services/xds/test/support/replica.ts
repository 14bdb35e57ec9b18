// A Replica in the test's own process against a real nats-server, and a NATS client on the same
// bucket: for tests that look at the replica's registry and snapshot store directly.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { KV } from "@nats-io/kv";
import { createLogger, NatsLink, openBucket, registrySettings } from "@envoyage/registry";
import { startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import { Replica, type ReplicaOptions } from "../../src/replica.js";
import { SnapshotStore } from "../../src/snapshot.js";

export interface InProcessReplica {
  nats: NatsServer;
  replica: Replica;
  store: SnapshotStore;
  /** The registry bucket, as a CLI user writes it. */
  kv: KV;
  stop(): Promise<void>;
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
    async stop() {
      await replica.stop();
      await link.close();
      await nc.close();
      await nats.stop();
    },
  };
}
