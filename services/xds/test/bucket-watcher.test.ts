// The bucket watcher every replica follows the registry with, against a real nats-server.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { pino, type Logger } from "pino";
import { BucketWatcher, createLogger, NatsLink, openBucket, type BucketEntry, type WatchHandlers } from "@envoyage/registry";
import { startNats, waitFor, type NatsServer } from "@envoyage/test-support";

describe("BucketWatcher", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    kv = await openBucket(nc, { bucket: "envoyage", create: true, timeoutMs: 2000 });
  });

  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  /** A watcher of `bucket` on a link of its own; the caller stops both. */
  function watch(bucket: string, logger: Logger, handlers: WatchHandlers) {
    const link = new NatsLink({ servers: [nats.url], name: "bucket-watcher-test", logger });
    const open = (connection: NatsConnection) => openBucket(connection, { bucket, create: false, timeoutMs: 2000 });
    return { link, watcher: new BucketWatcher({ link, bucket, timeoutMs: 2000, open, logger, handlers }) };
  }

  it("reports an entry its handler fails on and goes on: the initial load still ends, later entries still arrive", async () => {
    await kv.put("services.good", "{}");
    await kv.put("services.bad", "{}");
    const errors: Array<{ key: string; msg: string }> = [];
    const logger = pino({ level: "error" }, { write: (line: string) => errors.push(JSON.parse(line)) });
    const delivered: string[] = [];
    let loaded = false;
    const { link, watcher } = watch("envoyage", logger, {
      entry: (entry: BucketEntry) => {
        if (entry.key === "services.bad") throw new Error("a bug in the handler");
        delivered.push(entry.key);
      },
      loaded: () => (loaded = true),
      recreated: () => assert.fail("the bucket was not created again"),
    });
    try {
      await watcher.start();
      await waitFor("the initial load to end although its last entry failed", () => (loaded ? true : undefined));
      await kv.put("services.later", "{}");
      await waitFor("the entry written after it", () => (delivered.includes("services.later") ? true : undefined));
      assert.deepEqual(delivered, ["services.good", "services.later"]);
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.key, "services.bad");
      assert.match(errors[0]!.msg, /applying a bucket entry failed; it is skipped/);
    } finally {
      await watcher.stop();
      await link.close();
    }
  });

  it("keeps its watch on a bucket whose newest messages are gone: the stream's last sequence is ahead, but nothing is left to catch up on", async () => {
    // As the status bucket after its entries' TTL, or the registry after a compaction.
    const trimmed = await openBucket(nc, { bucket: "trimmed", create: true, timeoutMs: 2000 });
    await trimmed.put("services.a", "{}");
    const gone = await trimmed.put("services.b", "{}");
    await (await jetstreamManager(nc)).streams.deleteMessage("KV_trimmed", gone);
    const lines: Array<{ msg: string }> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const delivered: string[] = [];
    let loaded = false;
    const { link, watcher } = watch("trimmed", logger, {
      entry: (entry: BucketEntry) => delivered.push(entry.key),
      loaded: () => (loaded = true),
      recreated: () => assert.fail("the bucket was not created again"),
    });
    try {
      await watcher.start();
      await waitFor("the initial load", () => (loaded ? true : undefined));
      await sleep(2000); // four watchdog checks: the old rule restarted the watch at the second
      const said = lines.map((line) => line.msg);
      assert.deepEqual(said.filter((msg) => /stalled/.test(msg)), [], said.join("\n"));
      assert.equal(said.filter((msg) => msg === "watching the bucket").length, 1, said.join("\n"));
      await trimmed.put("services.c", "{}");
      await waitFor("an entry written after", () => (delivered.includes("services.c") ? true : undefined));
      assert.deepEqual(delivered, ["services.a", "services.c"]);
    } finally {
      await watcher.stop();
      await link.close();
    }
  });

  it("starts over when the bucket's stream is purged, which no watch hears of", async () => {
    const purged = await openBucket(nc, { bucket: "purged", create: true, timeoutMs: 2000 });
    await purged.put("services.a", "{}");
    await purged.put("services.b", "{}");
    const lines: Array<{ msg: string }> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    let delivered: string[] = [];
    let loads = 0;
    let startedOver = 0;
    const { link, watcher } = watch("purged", logger, {
      entry: (entry: BucketEntry) => delivered.push(entry.key),
      loaded: () => loads++,
      recreated: () => {
        startedOver++;
        delivered = [];
      },
    });
    try {
      await watcher.start();
      await waitFor("the initial load", () => (loads === 1 ? true : undefined));
      await sleep(1200); // watchdog checks of a bucket nobody purged: no start over
      assert.equal(startedOver, 0);
      const jsm = await jetstreamManager(nc);
      // Up to a sequence first (services.a's value goes, services.b's stays), then everything.
      await jsm.streams.purge("KV_purged", { seq: 2 });
      await waitFor("a start over after the purge up to a sequence", () => (startedOver === 1 && loads === 2 ? true : undefined));
      assert.deepEqual(delivered, ["services.b"]);
      await jsm.streams.purge("KV_purged");
      await waitFor("a start over after the whole purge", () => (startedOver === 2 && loads === 3 ? true : undefined));
      assert.deepEqual(delivered, []);
      assert.equal(watcher.revision, (await jsm.streams.info("KV_purged")).state.last_seq, "the empty bucket is as of its last sequence");
      await purged.put("services.c", "{}");
      await waitFor("an entry written after", () => (delivered.includes("services.c") ? true : undefined));
      assert.equal(lines.filter((line) => /its stream was purged\); starting over/.test(line.msg)).length, 2);
    } finally {
      await watcher.stop();
      await link.close();
    }
  });

  it("reads a key's newest revisions from a bucket made by hand with more history than Envoyage's", async () => {
    const handMade = await new Kvm(nc).create("handmade", { history: 20 });
    for (let i = 1; i <= 14; i++) await handMade.put("services.a", `{"i":${i}}`);
    const { link, watcher } = watch("handmade", createLogger("test", "silent"), { entry: () => {}, loaded: () => {}, recreated: () => {} });
    try {
      await watcher.start();
      const history = await watcher.history("services.a");
      const values = history.map((entry) => new TextDecoder().decode(entry.value));
      assert.deepEqual(values.slice(0, 2), ['{"i":14}', '{"i":13}'], "newest first");
      assert.equal(history.length, 14);
    } finally {
      await watcher.stop();
      await link.close();
    }
  });

  it("reads every service key's history in one go, newest first, deletes included, other keys left out", async () => {
    const bucket = await new Kvm(nc).create("histories", { history: 10 });
    for (let i = 0; i < 3; i++) await bucket.put("services.a", `a${i}`);
    await bucket.put("services.b", "b0");
    await bucket.delete("services.b");
    await bucket.put("domains.a_example_com", "a");
    const loaded = Promise.withResolvers<void>();
    const { link, watcher } = watch("histories", createLogger("test", "silent"), { entry: () => {}, loaded: () => loaded.resolve(), recreated: () => {} });
    try {
      await watcher.start();
      await loaded.promise; // as a replica asks: for the entries its load delivered
      const histories = await watcher.histories("services.");
      assert.ok(histories);
      const text = (entries: BucketEntry[] | undefined) => entries?.map((entry) => (entry.value ? new TextDecoder().decode(entry.value) : "(deleted)"));
      assert.deepEqual([...histories.keys()].sort(), ["services.a", "services.b"]);
      assert.deepEqual(text(histories.get("services.a")), ["a2", "a1", "a0"]);
      assert.deepEqual(text(histories.get("services.b")), ["(deleted)", "b0"]);
      assert.deepEqual(histories.get("services.a"), await watcher.history("services.a"), "as a lookup of one key reads it");
    } finally {
      await watcher.stop();
      await link.close();
    }
  });
});
