// A Replica in this process against a real nats-server: a claim written by hand for a service
// that never was goes to the service serving its domain, which keeps the domain when a record
// for the claim's holder shows up; a bucket restored from elsewhere is committed only once the
// last good revisions are known, so a conflicting record is never served nor given a claim.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { pino } from "pino";
import { BucketWatcher, claimKey, encodeRecord, openBucket } from "@envoyage/registry";
import { sleep, waitFor } from "@envoyage/test-support";
import { CLUSTER_TYPE } from "../src/ads/resources.js";
import type { Replica } from "../src/replica.js";
import { SnapshotStore } from "../src/snapshot.js";
import { bucketBackup, clusterNames, startInProcessReplica, type InProcessReplica } from "./support/replica.js";

let running: InProcessReplica;
let kv: KV;
let replica: Replica;
let store: SnapshotStore;

before(async () => {
  running = await startInProcessReplica(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }));
  ({ kv, replica, store } = running);
});

after(async () => {
  await running?.stop();
});

const holderOf = async (domain: string) => (await kv.get(claimKey(domain)))?.string();
const record = (...domains: string[]) => encodeRecord({ domains, endpoints: [{ address: "10.0.0.1", port: 80 }] });

describe("a claim written by hand for a service that never was", () => {
  it("goes to the service serving its domain, which keeps the domain when the claim's holder writes a record", async () => {
    await kv.put(claimKey("d.example.com"), "ghost");
    await kv.put("services.w", record("d.example.com", "w.example.com"));
    await waitFor("w to be served", () => (store.resources(CLUSTER_TYPE).has("w") ? true : undefined));
    await waitFor("w to claim d.example.com", async () => ((await holderOf("d.example.com")) === "w" ? true : undefined));

    await kv.put("services.ghost", record("d.example.com"));
    await waitFor("ghost's record to be judged", () => (replica.registry.status("ghost")?.state === "conflict" ? true : undefined));
    await sleep(200);
    assert.equal(store.resources(CLUSTER_TYPE).has("w"), true, "w lost its domains to a later record");
    assert.equal(store.resources(CLUSTER_TYPE).has("ghost"), false);
  });
});

describe("a claim written by hand while the replica claims the domain", () => {
  it("is taken over all the same, however the two writes cross", async () => {
    // The replica's create of each claim races with the hand-written one: it loses about half
    // of the time, while the hand-written claim's entry may arrive before its write is answered.
    const domains = Array.from({ length: 40 }, (_, i) => `race${i}.example.com`);
    await Promise.all(
      domains.map(async (domain, i) => {
        await kv.put(`services.race${i}`, record(domain));
        await kv.put(claimKey(domain), "ghost");
      }),
    );
    const holders = async () => Promise.all(domains.map(holderOf));
    await waitFor("every raced domain to be claimed for the service serving it", async () =>
      (await holders()).every((holder, i) => holder === `race${i}`) ? true : undefined,
    );
  });
});

describe("a domain that changes hands while its claim is being written", () => {
  it("is claimed for its new server once that write is answered", async () => {
    // The claim's write lands, but its answer is held back while the domain's server changes.
    const writeClaim = BucketWatcher.prototype.writeClaim;
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    BucketWatcher.prototype.writeClaim = async function (this: BucketWatcher, ...args: Parameters<typeof writeClaim>) {
      const won = await writeClaim.apply(this, args);
      await answered;
      return won;
    };
    try {
      await kv.put("services.s25", record("d25.example.com"));
      await waitFor("s25 to claim d25.example.com", async () => ((await holderOf("d25.example.com")) === "s25" ? true : undefined));
      await kv.put("services.t25", record("d25.example.com"));
      await kv.delete("services.s25");
      await waitFor("t25 to serve d25.example.com", () => (store.resources(CLUSTER_TYPE).has("t25") ? true : undefined));
    } finally {
      BucketWatcher.prototype.writeClaim = writeClaim;
      answer();
    }
    await waitFor("t25 to hold the claim", async () => ((await holderOf("d25.example.com")) === "t25" ? true : undefined), { timeoutMs: 5000 });
  });
});

describe("a bucket deleted and restored from elsewhere", () => {
  it("is committed once the last good revisions are in: a record conflicting with one is never served, nor given its claim", async () => {
    // The backup: h's latest value is invalid, and its last good revision holds d.example.com,
    // which s, written after it, lists too.
    const backup = await bucketBackup(async (saved) => {
      await saved.put("services.h", record("d.example.com"));
      await saved.put(claimKey("d.example.com"), "h");
      await saved.put("services.s", record("d.example.com", "s.example.com"));
      await saved.put("services.h", "{not json");
    });

    const restored = await startInProcessReplica(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }));
    // h's history is read before the restored bucket is committed; its answer held back a moment,
    // the replica resolves the registry once without committing it.
    const history = BucketWatcher.prototype.history;
    BucketWatcher.prototype.history = async function (this: BucketWatcher, ...args: Parameters<typeof history>) {
      const entries = await history.apply(this, args);
      await sleep(200);
      return entries;
    };
    try {
      await restored.kv.put("services.x", record("x.example.com"));
      await waitFor("x to be served", () => (restored.store.resources(CLUSTER_TYPE).has("x") ? true : undefined));
      const committed: string[][] = [];
      const counted: number[] = [];
      restored.store.onCommit(() => {
        committed.push(clusterNames(restored.store));
        counted.push(restored.replica.commits);
      });
      const commitsBefore = restored.replica.commits;
      await restored.restore(backup);
      await waitFor("the restored bucket to be served", () => (committed.at(-1)?.includes("h") ? true : undefined), { timeoutMs: 20_000 });
      assert.deepEqual(committed, [["h"]], "one commit, with h on its last good revision and without s");
      assert.deepEqual(counted, [commitsBefore + 1], "rejected services are reported from the registry as committed, not as resolved while h's history was read");
      await sleep(300);
      const reader = await connect({ servers: restored.nats.url });
      try {
        const bucket = await openBucket(reader, { bucket: "envoyage", create: false, timeoutMs: 2000 });
        assert.equal((await bucket.get(claimKey("d.example.com")))?.string(), "h", "the claim stays h's");
      } finally {
        await reader.close();
      }
    } finally {
      BucketWatcher.prototype.history = history;
      await restored.stop();
    }
  });
});

describe("claim writes that fail", () => {
  it("are said once, not once per domain and retry, and their end is said too", async () => {
    const lines: Array<{ level: number; msg: string }> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    let fullAt: { jsm: JetStreamManager; config: StreamConfig } | undefined;
    // Records written with the CLI, then the bucket full: the replica serves them, but cannot claim their domains.
    const own = await startInProcessReplica(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }), logger, async (bucket, nc) => {
      for (const name of ["f1", "f2", "f3"]) await bucket.put(`services.${name}`, record(`${name}-a.example.com`, `${name}-b.example.com`));
      const jsm = await jetstreamManager(nc);
      const { config } = await jsm.streams.info("KV_envoyage");
      await jsm.streams.update("KV_envoyage", { ...config, max_msgs: 3 });
      fullAt = { jsm, config };
    });
    try {
      assert.equal(own.store.resources(CLUSTER_TYPE).size, 3, "the three services are served");
      await sleep(4500); // the first writes and two retries, each of six domains
      const failures = lines.filter((line) => line.msg.startsWith("could not claim a served domain"));
      assert.equal(failures.length, 1, JSON.stringify(failures));
      assert.equal(failures[0]!.level, 40, "warn");

      await fullAt!.jsm.streams.update("KV_envoyage", { ...fullAt!.config, max_msgs: -1 });
      await waitFor("every domain claimed", async () => ((await own.kv.get(claimKey("f3-b.example.com")))?.string() === "f3" ? true : undefined), { timeoutMs: 10_000 });
      assert.ok(lines.some((line) => line.msg === "claim writes get through again"));
    } finally {
      await own.stop();
    }
  });
});
