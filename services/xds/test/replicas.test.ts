// Replica processes against a real nats-server: the readiness gate at size, identical versions
// and bytes from replicas that reached the same bucket state by different paths, and bad
// values that are skipped without harm.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kvm, type KV } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { encodeRecord, openBucket } from "@envoyage/registry";
import { AdsClient, sleep, startNats, startXds, TYPES, waitFor, type NatsServer, type XdsProcess } from "@envoyage/test-support";

let nats: NatsServer;
let nc: NatsConnection;
let kv: KV;
const replicas: XdsProcess[] = [];
const clients: AdsClient[] = [];

const endpointAt = (n: number, port: number) => encodeRecord({ domains: [`s${n}.example.com`], endpoints: [{ address: "10.9.0.1", port }] });
const portOf = (c: AdsClient, name: string) => c.endpoints(name)?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue;
const record = (n: number) => encodeRecord({ domains: [`s${n}.example.com`], endpoints: [{ address: `10.1.${n >> 8}.${n & 255}`, port: 8000 }] });

async function replica(): Promise<XdsProcess> {
  const started = await startXds({ natsUrl: nats.url, listenerPort: 10000 });
  replicas.push(started);
  return started;
}

function client(port: number, nodeId: string): AdsClient {
  const c = new AdsClient({ port, nodeId });
  clients.push(c);
  return c;
}

before(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  kv = await openBucket(nc, { bucket: "envoyage", create: true, replicas: 1, timeoutMs: 2000 });
  // 1,000 services before any replica starts.
  await Promise.all(Array.from({ length: 1000 }, (_, i) => kv.put(`services.s${i}`, record(i))));
});

after(async () => {
  for (const c of clients) c.close();
  for (const r of replicas) await r.stop();
  await nc?.close();
  await nats?.stop();
});

describe("xDS replicas on a real bucket", () => {
  it("never sends a partial registry: the first config a client gets holds all 1,000 services", async () => {
    const first = await replica();
    const early = client(first.xdsPort, "early"); // connected before the replica is ready
    await first.ready(20_000);
    await early.waitUntil("1,000 routes", (c) => Object.keys(c.virtualHosts()).length === 1000, 20_000);
    const cds = early.responses.filter((r) => r.typeUrl === TYPES.cluster);
    assert.equal(cds[0]?.names.length, 1000, "the first CDS response is complete");
    const rds = early.responses.filter((r) => r.typeUrl === TYPES.route);
    assert.equal(rds.length, 1, "routes were sent once, complete");
  });

  it("gives identical versions and bytes on a replica that watched the changes and one that loaded them", async () => {
    const live = replicas[0]!;
    const watcher = client(live.xdsPort, "watcher");
    await watcher.waitUntil("1,000 routes", (c) => Object.keys(c.virtualHosts()).length === 1000, 20_000);

    // Changes while the first replica watches: updates, deletes, a bad value, a re-add.
    for (let i = 0; i < 50; i++) await kv.put(`services.s${i}`, encodeRecord({ domains: [`s${i}.example.com`], endpoints: [{ address: "10.9.9.9", port: 9000 + i }] }));
    for (let i = 50; i < 60; i++) await kv.delete(`services.s${i}`);
    await kv.put("services.s60", "{broken");
    await kv.put("services.s55", record(55));

    const fresh = await replica();
    await fresh.ready(20_000);
    const loader = client(fresh.xdsPort, "loader");
    const settled = (c: AdsClient) => Object.keys(c.virtualHosts()).length === 991;
    await watcher.waitUntil("the changes", settled, 20_000);
    await loader.waitUntil("the same state", settled, 20_000);
    await sleep(100);

    const status = async (r: XdsProcess) => (await (await fetch(`${r.statusUrl}/status`)).json()) as { revision: number; resources: unknown };
    const [liveStatus, freshStatus] = [await status(live), await status(fresh)];
    assert.equal(liveStatus.revision, freshStatus.revision);
    assert.deepEqual(freshStatus.resources, liveStatus.resources, "both replicas report the same versions");
    for (const type of Object.values(TYPES)) {
      assert.deepEqual(loader.names(type), watcher.names(type));
      for (const name of watcher.names(type)) {
        assert.ok(loader.resource(type, name)?.equals(watcher.resource(type, name)!), `${type} ${name} differs`);
      }
    }
    assert.equal(watcher.endpoints("s60")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.address, "10.1.0.60", "the last good revision of s60 serves");
  });

  it("skips malformed values without crashing and keeps everything else flowing", async () => {
    const live = replicas[0]!;
    const c = client(live.xdsPort, "after-garbage");
    await c.waitUntil("the registry", (x) => Object.keys(x.virtualHosts()).length === 991, 20_000);
    await kv.put("services.fresh-garbage", new Uint8Array([0xff, 0xfe, 0x00]));
    await kv.put("services.not-a-record", '{"domains":["x.example.com"],"endpoints":[],"extra":1}');
    await kv.put("services.newcomer", encodeRecord({ domains: ["newcomer.example.com"], endpoints: [{ address: "10.2.0.1", port: 80 }] }));
    await c.waitUntil("the newcomer", (x) => "newcomer" in x.virtualHosts());
    assert.ok(!("fresh-garbage" in c.virtualHosts()) && !("not-a-record" in c.virtualHosts()));
    assert.ok(live.process.running, "the replica is still running");
    assert.match(live.process.output(), /rejected an invalid record; the service is not served/);
  });

  it("waits for the bucket when it does not exist yet", async () => {
    const other = await startXds({ natsUrl: nats.url, listenerPort: 10000, env: { ENVOYAGE_BUCKET: "later" } });
    replicas.push(other);
    await sleep(500);
    assert.equal((await fetch(`${other.statusUrl}/readyz`)).status, 503);
    assert.match(other.process.output(), /does not exist yet/);
    await new Kvm(nc).create("later", { history: 10 });
    await other.ready();
  });

  it("coalesces a burst of 1,000 changes into a handful of pushes", async () => {
    const c = client(replicas[0]!.xdsPort, "burst");
    await c.waitUntil("the registry", (x) => "newcomer" in x.virtualHosts(), 20_000);
    const from = c.responses.length;
    await Promise.all(Array.from({ length: 1000 }, (_, n) => kv.put(`services.s${100 + (n % 100)}`, endpointAt(100 + (n % 100), 20_000 + n))));
    await c.waitUntil("the last change", (x) => portOf(x, "s199") === 20_999, 20_000);
    const pushes = c.responses.slice(from).length;
    assert.ok(pushes <= 20, `${pushes} pushes for 1,000 changes`);
  });

  // A replica told to batch anything faster than one change per 300 ms, in 1.5 s windows.
  const batching = { COMMIT_BATCH_MS: "1500", COMMIT_BURST: "5" };

  it("coalesces a steady stream of changes, one write at a time, into batches", async () => {
    const patient = await startXds({ natsUrl: nats.url, listenerPort: 10000, env: batching });
    replicas.push(patient);
    await patient.ready(20_000);
    const c = client(patient.xdsPort, "trickle");
    await c.waitUntil("the registry", (x) => "newcomer" in x.virtualHosts(), 20_000);
    const from = c.responses.length;
    for (let n = 0; n < 300; n++) await kv.put(`services.s${200 + (n % 50)}`, endpointAt(200 + (n % 50), 30_000 + n));
    await c.waitUntil("the last change", (x) => portOf(x, "s249") === 30_299, 20_000);
    const pushes = c.responses.slice(from).length;
    assert.ok(pushes <= 10, `${pushes} pushes for 300 changes`);
  });

  it("pushes a single change at once, without waiting for the batch window", async () => {
    const patient = replicas.at(-1)!;
    const c = client(patient.xdsPort, "single");
    await c.waitUntil("the registry", (x) => portOf(x, "s249") === 30_299, 20_000);
    await sleep(1600); // a quiet spell longer than the window
    await kv.put("services.s300", endpointAt(300, 40_000));
    // Batched, the change would wait for the 1.5 s window; it arrives well before that.
    const started = performance.now();
    await c.waitUntil("the single change", (x) => portOf(x, "s300") === 40_000, 5000);
    assert.ok(performance.now() - started < 1000, "the change waited for the batch window");
  });

  it("commits late on a standby (no Envoy connected), at once when an Envoy is connected", async () => {
    const standby = await startXds({ natsUrl: nats.url, listenerPort: 10000, env: { COMMIT_STANDBY_MS: "1500" } });
    replicas.push(standby);
    await standby.ready(20_000);
    const committed = async () => ((await (await fetch(`${standby.statusUrl}/status`)).json()) as { revision: number }).revision;
    const timeToCommit = async (revision: number) => {
      const started = performance.now();
      await waitFor("the change to be committed", async () => ((await committed()) >= revision ? true : undefined), { timeoutMs: 5000, intervalMs: 20 });
      return performance.now() - started;
    };
    assert.ok((await timeToCommit(await kv.put("services.s301", endpointAt(301, 41_000)))) >= 1000, "a standby committed at once");
    const c = client(standby.xdsPort, "standby");
    await c.waitUntil("the registry", (x) => portOf(x, "s301") === 41_000, 20_000);
    assert.ok((await timeToCommit(await kv.put("services.s301", endpointAt(301, 41_001)))) < 1000, "a serving replica waited");
    await c.waitUntil("the change", (x) => portOf(x, "s301") === 41_001, 5000);
  });

  it("claims domains of records written with the CLI, so a later conflicting record never takes them", async () => {
    const live = replicas[0]!;
    const c = client(live.xdsPort, "claims");
    const claimOf = async (domain: string) => {
      const entry = await kv.get(`domains.${domain}`);
      return entry?.operation === "PUT" ? entry.string() : undefined;
    };
    await kv.put("services.holder", encodeRecord({ domains: ["contested.example.com"], endpoints: [{ address: "10.3.0.1", port: 80 }] }));
    await c.waitUntil("the holder", (x) => "holder" in x.virtualHosts(), 10_000);
    await waitFor("the replicas to claim the domain", async () => ((await claimOf("contested.example.com")) === "holder" ? true : undefined));

    await kv.put("services.latecomer", encodeRecord({ domains: ["contested.example.com", "late.example.com"], endpoints: [{ address: "10.3.0.2", port: 80 }] }));
    // The holder is rewritten after the latecomer: without the claim the latecomer's record would now be the older one.
    await kv.put("services.holder", encodeRecord({ domains: ["contested.example.com"], endpoints: [{ address: "10.3.0.9", port: 80 }] }));
    await c.waitUntil("the holder's new endpoint", (x) => x.endpoints("holder")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.address === "10.3.0.9");
    assert.deepEqual(c.virtualHosts()["holder"], ["contested.example.com"]);
    assert.equal("latecomer" in c.virtualHosts(), false, "the conflicting record is not served");
    const status = (await (await fetch(`${live.statusUrl}/status`)).json()) as { services: { rejected: Record<string, { state: string }> } };
    assert.equal(status.services.rejected["latecomer"]?.state, "conflict");
    assert.match(live.process.output(), /rejected a record claiming domains another service holds/);
  });

  it("keeps a service on its last good revision when the CLI rewrites it into a conflict, in a replica started after too", async () => {
    const live = replicas[0]!;
    const c = client(live.xdsPort, "last-good");
    const addressOf = (x: AdsClient) => x.endpoints("keeper")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.address;
    const good = await kv.put("services.keeper", encodeRecord({ domains: ["keep.example.com"], endpoints: [{ address: "10.4.0.1", port: 80 }] }));
    await kv.put("services.neighbour", encodeRecord({ domains: ["neighbour.example.com"], endpoints: [{ address: "10.4.0.2", port: 80 }] }));
    await c.waitUntil("both services", (x) => addressOf(x) === "10.4.0.1" && "neighbour" in x.virtualHosts(), 10_000);
    for (const domain of ["keep.example.com", "neighbour.example.com"]) {
      await waitFor(`the replicas to claim ${domain}`, async () => ((await kv.get(`domains.${domain}`))?.operation === "PUT" ? true : undefined));
    }
    const conflicting = await kv.put(
      "services.keeper",
      encodeRecord({ domains: ["keep.example.com", "neighbour.example.com"], endpoints: [{ address: "10.4.0.9", port: 80 }] }),
    );
    type Rejected = { state: string; revision: number; servingRevision?: number | null };
    const rejectedKeeper = async (r: XdsProcess) =>
      ((await (await fetch(`${r.statusUrl}/status`)).json()) as { services: { rejected: Record<string, Rejected> } }).services.rejected["keeper"];
    await waitFor("the conflict to be reported", async () => ((await rejectedKeeper(live))?.revision === conflicting ? true : undefined));
    assert.deepEqual(await rejectedKeeper(live), { state: "conflict", revision: conflicting, conflicts: [{ domain: "neighbour.example.com", heldBy: "neighbour" }], servingRevision: good });
    assert.equal(addressOf(c), "10.4.0.1", "the last good endpoint keeps serving");
    assert.deepEqual(c.virtualHosts()["keeper"], ["keep.example.com"]);
    assert.deepEqual(c.virtualHosts()["neighbour"], ["neighbour.example.com"]);
    assert.match(live.process.output(), /the last good revision keeps serving/);

    const fresh = await replica();
    await fresh.ready(30_000);
    assert.deepEqual(await rejectedKeeper(fresh), await rejectedKeeper(live));
    const late = client(fresh.xdsPort, "last-good-late");
    await late.waitUntil("the registry", (x) => "neighbour" in x.virtualHosts(), 20_000);
    assert.equal(addressOf(late), "10.4.0.1");
    assert.equal(late.version(TYPES.route), c.version(TYPES.route), "both replicas route the same");
    await fresh.stop();
  });

  it("rides out a burst of invalid values written all at once: each reported, no consumer left behind, a new replica starts", async () => {
    const live = replicas[0]!;
    const count = 400;
    await Promise.all(Array.from({ length: count }, (_, i) => kv.put(`services.junk${i}`, `garbage ${i}`)));
    const rejected = async (r: XdsProcess) =>
      Object.keys(((await (await fetch(`${r.statusUrl}/status`)).json()) as { services: { rejected: Record<string, unknown> } }).services.rejected).filter((n) => n.startsWith("junk")).length;
    await waitFor(`the ${count} invalid values to be reported`, async () => ((await rejected(live)) === count ? true : undefined), { timeoutMs: 30_000 });
    const jsm = await jetstreamManager(nc);
    // Lookups read history without consumers: what is left is the replicas' watches (one each, a
    // restarted watch's old one for a few seconds), nowhere near one per invalid value.
    const consumers = (await jsm.streams.info("KV_envoyage")).state.consumer_count;
    assert.ok(consumers < 20, `${consumers} consumers on the stream`);
    const fresh = await replica();
    await fresh.ready(30_000);
    assert.equal(await rejected(fresh), count);
    await Promise.all(Array.from({ length: count }, (_, i) => kv.delete(`services.junk${i}`)));
  });
});
