// Sync status as a replica publishes it, on a real nats-server: Envoy-like clients over real gRPC,
// their reports in pages of the status bucket, and a config change that every Envoy acknowledges
// costing a few page writes rather than one per Envoy.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { decodeRejectedPage, envoyPageKey, openStatusBucket, rejectedPageKey, type EnvoyPage, type RejectedService, type ServiceRecord } from "@envoyage/registry";
import { AdsClient, startNats, TYPES, waitFor, type NatsServer } from "@envoyage/test-support";
import pino from "pino";
import { AdsServer } from "../src/ads/server.js";
import { SnapshotStore } from "../src/snapshot.js";
import { flushWaits, StatusPublisher } from "../src/status-publisher.js";
import { ENVOY_PAGES, packPages, REJECTED_PAGES } from "../src/status-pages.js";

const record = (port: number): ServiceRecord => ({ domains: ["web.example.com"], endpoints: [{ address: "10.0.0.1", port }] });
const ENVOYS = 24;
const PAGE_BYTES = 4096;

describe("flushWaits", () => {
  it("holds a flush while Envoy events keep coming, for two seconds at most", () => {
    assert.equal(flushWaits(1000, 990, 600), true, "an event 10 ms ago: Envoys are still taking a change");
    assert.equal(flushWaits(1000, 940, 600), false, "quiet for 60 ms");
    assert.equal(flushWaits(3000, 2995, 1000), false, "events for 2 s without a flush");
    assert.equal(flushWaits(1000, -Infinity, -Infinity), false, "no event yet");
  });
});

describe("packPages", () => {
  it("keeps the reports in order, each page within the limit and valid JSON", () => {
    const reports = Array.from({ length: 50 }, (_, i) => JSON.stringify({ node: `envoy-${i}`, pad: "x".repeat(i * 7) }));
    const pages = packPages(reports, 1024, ENVOY_PAGES);
    assert.ok(pages.length > 1);
    for (const page of pages) assert.ok(Buffer.byteLength(page) <= 1024, `a page of ${Buffer.byteLength(page)} bytes`);
    const nodes = pages.flatMap((page) => (JSON.parse(page) as { envoys: { node: string }[] }).envoys.map((e) => e.node));
    assert.deepEqual(nodes, reports.map((_, i) => `envoy-${i}`));
  });

  it("gives a report larger than a page a page of its own, and counts bytes, not characters", () => {
    const big = JSON.stringify({ node: "é".repeat(800) }); // 1,600 bytes in 800 characters
    const pages = packPages([JSON.stringify({ node: "a" }), big, JSON.stringify({ node: "b" })], 1024, ENVOY_PAGES);
    assert.equal(pages.length, 3);
    assert.equal((JSON.parse(pages[1]!) as { envoys: unknown[] }).envoys.length, 1);
    assert.deepEqual(packPages([], 1024, ENVOY_PAGES), []);
  });

  it("packs object members into pages that are JSON objects", () => {
    const members = Array.from({ length: 30 }, (_, i) => `${JSON.stringify(`svc-${i}`)}:${JSON.stringify({ revision: i })}`);
    const pages = packPages(members, 200, REJECTED_PAGES);
    assert.ok(pages.length > 1);
    const merged = Object.assign({}, ...pages.map((page) => (JSON.parse(page) as { rejected: object }).rejected)) as Record<string, { revision: number }>;
    assert.deepEqual(Object.keys(merged), members.map((_, i) => `svc-${i}`));
  });
});

describe("StatusPublisher", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;
  let store: SnapshotStore;
  let ads: AdsServer;
  let publisher: StatusPublisher;
  const clients: AdsClient[] = [];
  let startedAt = 0;
  let rejected: Record<string, RejectedService> = {};
  let port = 0;

  /** Every Envoy report in the bucket's pages, and the number of pages. */
  const published = async () => {
    const reports: EnvoyPage["envoys"] = [];
    let pages = 0;
    for await (const key of await kv.keys("envoys.>")) {
      const entry = await kv.get(key);
      if (entry?.operation !== "PUT") continue;
      assert.ok(entry.value.length <= PAGE_BYTES, `page ${key} is ${entry.value.length} bytes`);
      reports.push(...(entry.json<EnvoyPage>().envoys));
      pages++;
    }
    return { reports, pages };
  };
  /** Every rejected service in the bucket's pages, and the number of pages. */
  const publishedRejected = async () => {
    const services = new Map<string, RejectedService>();
    let pages = 0;
    for await (const key of await kv.keys("rejected.>")) {
      const entry = await kv.get(key);
      if (entry?.operation !== "PUT") continue;
      assert.ok(entry.value.length <= PAGE_BYTES, `page ${key} is ${entry.value.length} bytes`);
      for (const [name, why] of decodeRejectedPage(entry.value) ?? []) services.set(name, why);
      pages++;
    }
    return { services, pages };
  };
  const lastSequence = async () => (await kv.status()).streamInfo.state.last_seq;

  before(async () => {
    startedAt = Date.now();
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    kv = await openStatusBucket(jetstream(nc), "status-test", 1);
    store = new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 });
    store.setService("web", record(5678));
    store.commit({ revision: 1, firstWriteAt: undefined });
    store.markReady();
    publisher = new StatusPublisher({
      replicaId: "xds-test",
      logger: pino({ level: "silent" }),
      store,
      report: () => ({ replica: "xds-test", ready: true, revision: 1 }),
      rejected: () => rejected,
      pageBytes: PAGE_BYTES,
    });
    ads = new AdsServer({ source: store, events: publisher.events() });
    port = await ads.listen("127.0.0.1", 0);
    await publisher.start(async () => kv);
    for (let i = 0; i < ENVOYS; i++) clients.push(new AdsClient({ port, protocol: "sotw", nodeId: `envoy-${i}` }));
    await Promise.all(clients.map((c) => c.waitUntil("the config", (x) => x.routes() !== undefined && x.endpoints("web") !== undefined)));
  });

  after(async () => {
    for (const client of clients) client.close();
    await publisher?.stop();
    await ads?.shutdown(100);
    await nc?.close();
    await nats?.stop();
  });

  it("publishes every Envoy, synced, in pages within the size limit", async () => {
    const { reports, pages } = await waitFor("every Envoy synced in the bucket", async () => {
      await publisher.flush();
      const found = await published();
      return found.reports.filter((r) => r.syncedRevision === 1).length === ENVOYS ? found : undefined;
    });
    assert.ok(pages > 1 && pages < ENVOYS, `${pages} pages for ${ENVOYS} Envoys`);
    assert.deepEqual(reports.map((r) => r.node).sort(), clients.map((_, i) => `envoy-${i}`).sort());
    const one = reports[0]!;
    assert.equal(one.connected, true);
    assert.equal(one.types["EDS"]!.acked, store.resources(TYPES.endpoint).version);
    // Times are stamped as events happen, in ISO form, even when a thousand share a millisecond.
    const times = [one.connectedAt, one.types["EDS"]!.ackedAt!, one.updatedAt];
    for (const time of times) assert.equal(new Date(time).toISOString(), time);
    const ms = times.map((time) => Date.parse(time));
    assert.ok(startedAt <= ms[0]! && ms[0]! <= ms[1]! && ms[1]! <= ms[2]! && ms[2]! <= Date.now(), `times out of order: ${times.join(", ")}`);
  });

  it("writes nothing when nothing changed, and a few pages when every Envoy takes a change", async () => {
    await publisher.flush();
    const quiet = await lastSequence();
    await publisher.flush();
    assert.equal(await lastSequence(), quiet, "an idle flush writes nothing");

    store.setService("web", record(5679));
    store.commit({ revision: 2, firstWriteAt: undefined });
    await Promise.all(clients.map((c) => c.waitUntil("the change", (x) => x.endpoints("web")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue === 5679)));
    const { pages } = await waitFor("every Envoy at revision 2 in the bucket", async () => {
      await publisher.flush();
      const found = await published();
      return found.reports.every((r) => r.syncedRevision === 2) ? found : undefined;
    });
    const writes = (await lastSequence()) - quiet;
    assert.ok(writes < ENVOYS / 2, `${writes} writes for ${ENVOYS} Envoys in ${pages} pages`);
  });

  it("reports Envoys that went away as disconnected", async () => {
    for (const client of clients.slice(0, 5)) client.close();
    const { reports } = await waitFor("five Envoys disconnected in the bucket", async () => {
      await publisher.flush();
      const found = await published();
      return found.reports.filter((r) => !r.connected).length === 5 ? found : undefined;
    });
    assert.equal(reports.length, ENVOYS, "still listed, as disconnected, until they would have expired");
  });

  it("publishes rejected services in pages within the size limit, and deletes the pages no longer needed", async () => {
    // A few hundred bad records must not make an entry larger than NATS takes.
    rejected = Object.fromEntries(
      Array.from({ length: 300 }, (_, i): [string, RejectedService] => [`bad-${i}`, { state: "invalid", revision: 10 + i, problem: `bad record ${i}: ${"x".repeat(40)}`, servingRevision: null }]),
    );
    const many = await waitFor("300 rejected services in the bucket", async () => {
      await publisher.flush();
      const found = await publishedRejected();
      return found.services.size === 300 ? found : undefined;
    });
    assert.ok(many.pages > 5, `${many.pages} pages for 300 rejected services`);
    assert.deepEqual(many.services.get("bad-7"), rejected["bad-7"]);
    const written = await lastSequence();
    await publisher.flush();
    assert.equal(await lastSequence(), written, "the same rejected services are not written again");

    rejected = { "bad-7": rejected["bad-7"]! };
    const one = await waitFor("one rejected service left in the bucket", async () => {
      await publisher.flush();
      const found = await publishedRejected();
      return found.pages === 1 ? found : undefined;
    });
    assert.deepEqual([...one.services.keys()], ["bad-7"]);
  });

  it("counts the flushes NATS refuses, and publishes again once it takes them", async () => {
    // One rejected record whose problem alone is over NATS's 1 MB message limit.
    rejected = { huge: { state: "invalid", revision: 99, problem: "x".repeat(1_100_000), servingRevision: null } };
    const before = publisher.failures;
    await publisher.flush();
    assert.equal(publisher.failures, before + 1);
    rejected = {};
    await waitFor("a flush that succeeds", async () => {
      await publisher.flush();
      const failures = publisher.failures;
      await publisher.flush();
      return publisher.failures === failures ? true : undefined;
    });
  });

  it("deletes the pages an earlier process of its replica id left, once it has opened the bucket", { timeout: 20_000 }, async () => {
    // A replica restarted under the same id, with fewer Envoys and rejected services than before,
    // and a page numbered by hand: one delete, not one per number below it.
    await kv.put(envoyPageKey("xds-again", 2), JSON.stringify({ envoys: [] }));
    await kv.put(envoyPageKey("xds-again", 999_999_999), JSON.stringify({ envoys: [] }));
    await kv.put(rejectedPageKey("xds-again", 4), JSON.stringify({ rejected: {} }));
    const again = new StatusPublisher({
      replicaId: "xds-again",
      logger: pino({ level: "silent" }),
      store,
      report: () => ({ replica: "xds-again", ready: true, revision: 1 }),
      rejected: () => ({}),
    });
    await again.start(async () => kv);
    await again.stop();
    const left: string[] = [];
    for await (const key of await kv.keys("*.eGRzLWFnYWlu.>")) if ((await kv.get(key))?.operation === "PUT") left.push(key);
    assert.deepEqual(left, []);
  });

  it("reports an Envoy synced again, not NACKED, once the change it rejected is written back", async () => {
    const nacker = new AdsClient({ port, protocol: "sotw", nodeId: "nacker", nack: (type, names) => (type === TYPES.cluster && names.includes("poison") ? "rejected on purpose" : undefined) });
    clients.push(nacker);
    await nacker.waitUntil("the config", (x) => x.routes() !== undefined && x.endpoints("web") !== undefined);
    const report = async () => (await published()).reports.find((r) => r.node === "nacker");
    store.setService("poison", { domains: ["poison.example.com"], endpoints: [{ address: "10.0.0.2", port: 80 }] });
    store.commit({ revision: 3, firstWriteAt: undefined });
    await waitFor("the NACK reported", async () => ((await report())?.types["CDS"]?.nacked ? true : undefined));
    // Back to the clusters Envoy holds: nothing is sent, Envoy holds the current state again.
    store.removeService("poison");
    store.commit({ revision: 4, firstWriteAt: undefined });
    await waitFor("the Envoy reported synced, its rejection no longer current", async () => {
      const now = await report();
      return now?.syncedRevision === 4 && now.types["CDS"]?.nacked === null ? true : undefined;
    });
  });
});
