// A Replica in this process against a real nats-server whose bucket is replaced by another (a
// restore from a backup): a commit the replica held back from before is not run on the new
// bucket half read, even when an Envoy connecting asks for it while the replica starts over; and
// what it reflects is the new bucket's revision, even when the services it serves do not change.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KV } from "@nats-io/kv";
import { pino } from "pino";
import { encodeRecord } from "@envoyage/registry";
import { waitFor } from "@envoyage/test-support";
import type { Replica } from "../src/replica.js";
import { SnapshotStore } from "../src/snapshot.js";
import { bucketBackup, clusterNames, startInProcessReplica } from "./support/replica.js";

const record = (name: string, port: number) => encodeRecord({ domains: [`${name}.example.com`], endpoints: [{ address: "10.0.0.1", port }] });

describe("a bucket restored from elsewhere while a standby holds a commit back", () => {
  it("is committed only once it is loaded, even when an Envoy connects as the replica starts over", async () => {
    const backup = await bucketBackup(async (saved) => {
      for (const name of ["a", "b", "c"]) await saved.put(`services.${name}`, record(name, 100));
    });

    let replica: Replica | undefined;
    const committed: string[][] = [];
    let startedOver = false;
    // The replica starts over right after the watch says so: an Envoy connecting in the same turn
    // has the commit held back run at once (Replica.envoyConnected), before anything of the new bucket is read.
    const logger = pino({ level: "warn" }, {
      write: (line: string) => {
        if (!(JSON.parse(line) as { msg: string }).msg.includes("starting over")) return;
        startedOver = true;
        queueMicrotask(() => replica?.envoyConnected());
      },
    });
    const store = new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 });
    const standby = { batch: { windowMs: 50, burst: 20, standbyMs: 60_000 }, served: () => false };
    const seed = async (kv: KV) => {
      for (const name of ["a", "b"]) await kv.put(`services.${name}`, record(name, 1));
    };
    const running = await startInProcessReplica(store, logger, seed, standby);
    replica = running.replica;
    try {
      store.onCommit(() => committed.push(clusterNames(store)));
      const held = await running.kv.put("services.a", record("a", 2));
      await waitFor("the change to be applied (and its commit held back)", () => (running.replica.revision >= held ? true : undefined));
      assert.equal(committed.length, 0, "a standby commits late");

      await running.restore(backup);
      await waitFor(
        "the restored bucket to be committed",
        () => {
          // From then on, as Envoys keep connecting: the load's commit runs once it is due (a standby holds it back a minute).
          if (startedOver) running.replica.envoyConnected();
          return committed.at(-1)?.includes("c") ? true : undefined;
        },
        { timeoutMs: 20_000 },
      );
      assert.deepEqual(committed, [["a", "b", "c"]], "one commit, of the whole restored bucket");
      // Nobody wrote it just now: the convergence metric does not time a load (nor the change to the bucket that is gone).
      assert.equal(store.commitMeta(store.serial)?.firstWriteAt, undefined);
    } finally {
      await running.stop();
    }
  });
});

describe("a bucket restored from an older backup that holds the same services", () => {
  it("reflects the restored bucket's revision, not the higher one of the bucket that is gone", async () => {
    const backup = await bucketBackup(async (saved) => void (await saved.put("services.a", record("a", 1))));

    // The same record as the backup's, written last of five: after the restore nothing served changes.
    const seed = async (kv: KV) => {
      for (const port of [9, 8, 7, 6, 1]) await kv.put("services.a", record("a", port));
    };
    const running = await startInProcessReplica(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }), undefined, seed);
    try {
      const lastSeq = async () => (await running.kv.status()).streamInfo.state.last_seq;
      // Five writes of a, then its domain's claim, written by the replica.
      await waitFor("the replica to reflect the bucket and a's claim", async () => (running.replica.committedRevision === 6 && (await lastSeq()) === 6 ? true : undefined));
      const old = running.replica.committedRevision;
      await running.restore(backup);
      await waitFor("the replica to reflect the restored bucket", async () => {
        const revision = running.replica.committedRevision;
        return revision < old && revision === (await lastSeq().catch(() => -1)) ? true : undefined;
      }, { timeoutMs: 20_000 });
    } finally {
      await running.stop();
    }
  });
});
