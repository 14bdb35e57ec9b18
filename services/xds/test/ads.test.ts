// The ADS protocol over real gRPC, with a client that behaves like Envoy.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import type { ServiceRecord } from "@envoyage/registry";
import * as grpc from "@grpc/grpc-js";
import { AdsClient, sleep, TYPES, waitFor } from "@envoyage/test-support";
import { AdsServer, type AdsEvents } from "../src/ads/server.js";
import { TYPE_NAMES } from "../src/ads/resources.js";
import { SnapshotStore } from "../src/snapshot.js";
import { Cluster_DiscoveryType } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";

const record = (n: number, port = 8000 + n): ServiceRecord => ({
  domains: [`s${n}.example.com`],
  endpoints: [{ address: `10.0.0.${n}`, port }],
});

interface Event {
  kind: "push" | "ack" | "nack" | "stale";
  type: string;
  version: string;
  names?: number;
}

function recorder(): AdsEvents & { events: Event[] } {
  const events: Event[] = [];
  return {
    events,
    connect() {},
    disconnect() {},
    error(_stream, error) {
      throw error;
    },
    push: (_s, type, body) => void events.push({ kind: "push", type: TYPE_NAMES[type]!, version: body.version, names: body.count }),
    ack: (_s, type, version) => void events.push({ kind: "ack", type: TYPE_NAMES[type]!, version }),
    nack: (_s, type, version) => void events.push({ kind: "nack", type: TYPE_NAMES[type]!, version }),
    stale: (_s, type) => void events.push({ kind: "stale", type: TYPE_NAMES[type]!, version: "" }),
    synced() {},
  };
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setupWith(
  services: Record<string, ServiceRecord>,
  { ready = true, protocol = "sotw" as "sotw" | "delta", overrides = {} as Partial<AdsEvents>, host = "127.0.0.1" } = {},
) {
  const store = new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 });
  for (const [name, r] of Object.entries(services)) store.setService(name, r);
  store.commit();
  if (ready) store.markReady();
  const events = { ...recorder(), ...overrides };
  const server = new AdsServer({ source: store, events });
  const port = await server.listen(host, 0);
  cleanups.push(() => server.shutdown(100));
  const connect = (options: Partial<ConstructorParameters<typeof AdsClient>[0]> = {}) => {
    const client = new AdsClient({ host, port, protocol, ...options });
    cleanups.push(() => client.close());
    return client;
  };
  return { store, server, events: events.events, connect };
}

const synced = (client: AdsClient, vhosts: number) =>
  client.waitUntil(`${vhosts} virtual hosts`, (c) => Object.keys(c.virtualHosts()).length === vhosts && c.names(TYPES.listener).length === 1);

const indexOf = (events: Event[], match: (e: Event) => boolean, from = 0) => {
  const i = events.slice(from).findIndex(match);
  return i < 0 ? -1 : i + from;
};

/** Index of the first push of `type` after `from`, and of the ACK of that very push. */
function pushAndAck(events: Event[], type: string, from: number): [number, number] {
  const push = indexOf(events, (e) => e.kind === "push" && e.type === type, from);
  const version = events[push]?.version;
  return [push, indexOf(events, (e) => e.kind === "ack" && e.type === type && e.version === version, push + 1)];
}

/** A response as "TYPE:updated+names" (and "-removed+names" for delta). */
const shape = (r: { typeUrl: string; names: string[]; removed: string[] }) =>
  `${TYPE_NAMES[r.typeUrl]}:${r.names.join("+")}${r.removed.length > 0 ? `-${r.removed.join("+")}` : ""}`;

for (const protocol of ["sotw", "delta"] as const) {
describe(`ADS (${protocol})`, () => {
  const setup = (services: Record<string, ServiceRecord>, options: { ready?: boolean } = {}) => setupWith(services, { ...options, protocol });
  it("answers a fresh Envoy's first requests even when the registry is empty", async () => {
    const { connect } = await setup({});
    const client = connect();
    await client.waitUntil("an empty config", (c) => c.routes() !== undefined);
    assert.deepEqual(client.responses.map((r) => TYPE_NAMES[r.typeUrl]), ["CDS", "LDS", "RDS"]);
  });

  it("serves nothing until the registry is loaded (readiness gate)", async () => {
    const { store, connect } = await setup({ a: record(1), b: record(2) }, { ready: false });
    const client = connect();
    await sleep(300);
    assert.equal(client.responses.length, 0, "no response before the store is ready");
    store.markReady();
    await synced(client, 2);
    assert.deepEqual(client.names(TYPES.cluster), ["a", "b"]);
    assert.equal(client.responses.find((r) => r.typeUrl === TYPES.cluster)?.names.length, 2, "the first CDS response is the whole registry");
  });

  it("sends a new stream clusters, then endpoints, and listeners and routes only once clusters are acknowledged and endpoints sent", async () => {
    const { events, connect } = await setup({ a: record(1), b: record(2) });
    const client = connect();
    await synced(client, 2);
    assert.deepEqual(client.responses.map((r) => TYPE_NAMES[r.typeUrl]), ["CDS", "EDS", "LDS", "RDS"]);
    const [pushCds, ackCds] = pushAndAck(events, "CDS", 0);
    const pushEds = indexOf(events, (e) => e.kind === "push" && e.type === "EDS");
    const pushLds = indexOf(events, (e) => e.kind === "push" && e.type === "LDS");
    const pushRds = indexOf(events, (e) => e.kind === "push" && e.type === "RDS");
    assert.ok(ackCds > pushCds && pushEds > pushCds && pushLds > Math.max(ackCds, pushEds) && pushRds > pushLds, JSON.stringify(events));
    assert.deepEqual(client.endpoints("a")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.address, "10.0.0.1");
  });

  it("adds a service make-before-break: its route comes after its cluster is acknowledged and its endpoints sent", async () => {
    const { store, events, connect } = await setup({ a: record(1) });
    const client = connect();
    await synced(client, 1);
    const from = events.length;
    store.setService("c", record(3));
    store.commit();
    await synced(client, 2);
    const [pushCds, ackCds] = pushAndAck(events, "CDS", from);
    const pushEds = indexOf(events, (e) => e.kind === "push" && e.type === "EDS", from);
    const pushRds = indexOf(events, (e) => e.kind === "push" && e.type === "RDS", from);
    assert.ok(pushCds >= 0 && ackCds > pushCds && pushEds > pushCds && pushRds > Math.max(ackCds, pushEds), JSON.stringify(events.slice(from)));
    assert.equal(events.slice(from).filter((e) => e.kind === "push" && e.type === "LDS").length, 0, "the listener did not change");
  });

  it("sends no listeners or routes to a stream that has not asked for clusters, as Envoy reconnecting while clusters warm", async () => {
    const { store, connect } = await setup({ a: record(1) });
    const client = connect();
    await synced(client, 1);
    client.reconnect({ pause: [TYPES.cluster] });
    const from = client.responses.length;
    store.setService("c", record(3));
    store.commit();
    await sleep(300); // a push takes a few ms: time enough for routes to go out if they were going to
    const early = client.responses.slice(from).filter((r) => r.typeUrl === TYPES.listener || r.typeUrl === TYPES.route);
    assert.deepEqual(early.map(shape), [], "routes naming cluster c, which this Envoy was never sent");
    client.resume(TYPES.cluster);
    await synced(client, 2);
    assert.ok(client.names(TYPES.cluster).includes("c"));
  });

  it("removes a service break-after-make: routes go first, the cluster only after they are acknowledged", async () => {
    const { store, events, connect } = await setup({ a: record(1), gone: record(2) });
    const client = connect();
    await synced(client, 2);
    const from = events.length;
    store.removeService("gone");
    store.commit();
    await client.waitUntil("the cluster to go", (c) => !c.names(TYPES.cluster).includes("gone"));
    const [pushRds, ackRds] = pushAndAck(events, "RDS", from);
    const pushCds = indexOf(events, (e) => e.kind === "push" && e.type === "CDS", from);
    assert.ok(pushRds >= 0 && ackRds > pushRds && pushCds > ackRds, JSON.stringify(events.slice(from)));
    assert.deepEqual(Object.keys(client.virtualHosts()), ["a"]);
  });

  it("moves a domain to a new service without a gap: new cluster warm, routes switched, old cluster removed", async () => {
    const { store, connect } = await setup({ old: { domains: ["d.example.com"], endpoints: [{ address: "10.0.0.1", port: 1 }] } });
    const client = connect();
    await synced(client, 1);
    const from = client.responses.length;
    store.removeService("old");
    store.setService("new", { domains: ["d.example.com"], endpoints: [{ address: "10.0.0.2", port: 2 }] });
    store.commit();
    await client.waitUntil("the old cluster to go", (c) => c.names(TYPES.cluster).join() === "new");
    assert.deepEqual(
      client.responses.slice(from).map(shape),
      protocol === "sotw"
        ? ["CDS:new+old", "EDS:new", "RDS:envoyage_http", "CDS:new"]
        : ["CDS:new", "EDS:new", "RDS:envoyage_http", "CDS:-old"],
    );
  });

  it("switches endpoints with one EDS push of one resource", async () => {
    const { store, events, connect } = await setup({ a: record(1), b: record(2) });
    const client = connect();
    await synced(client, 2);
    const from = events.length;
    store.setService("a", record(1, 9999));
    store.commit();
    await client.waitUntil("the new port", (c) => c.endpoints("a")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue === 9999);
    await sleep(50);
    assert.deepEqual(
      events.slice(from).filter((e) => e.kind === "push"),
      [{ kind: "push", type: "EDS", version: events.slice(from).find((e) => e.kind === "push")!.version, names: 1 }],
    );
  });

  const afterward: [string, (store: SnapshotStore) => void, string[]][] = [
    ["deleted", (store) => store.removeService("b"), ["a"]],
    ["given hostname endpoints", (store) => store.setService("b", { domains: ["s2.example.com"], endpoints: [{ address: "localhost", port: 8002 }] }), ["a", "b"]],
  ];
  for (const [change, apply, clusters] of afterward) {
    it(`gives Envoy the endpoints of a cluster it warms that was ${change} meanwhile, so its clusters do not wait for the initial fetch timeout`, async () => {
      const { store, connect } = await setup({ a: record(1) });
      const client = connect({ warming: true });
      await synced(client, 1);
      store.setService("b", record(2));
      store.commit(); // Envoy gets clusters with b, and asks for b's endpoints before it ACKs them
      apply(store);
      store.commit();
      // Versions are content hashes: after a deletion the latest clusters have the version from before.
      const withB = () => client.responses.findIndex((r) => r.typeUrl === TYPES.cluster && r.names.includes("b"));
      const cdsAfterB = () => client.responses.some((r, i) => r.typeUrl === TYPES.cluster && withB() >= 0 && i > withB());
      const latest = (type: string) => store.resources(type).version;
      await client.waitUntil("the latest clusters and routes", (c) => cdsAfterB() && c.version(TYPES.cluster) === latest(TYPES.cluster) && c.version(TYPES.route) === latest(TYPES.route));
      assert.deepEqual(client.names(TYPES.cluster), clusters);
      assert.ok(client.responses.some((r) => r.typeUrl === TYPES.endpoint && r.names.includes("b")), "b's endpoints, as they were, warmed it");
      assert.equal(client.clusters().find((c) => c.name === "b")?.type ?? Cluster_DiscoveryType.STRICT_DNS, Cluster_DiscoveryType.STRICT_DNS);
    });
  }

  it("keeps a cluster that routes on their way to Envoy use, when its service goes before Envoy acknowledged them", async () => {
    // A domain moves to a new service and back before Envoy acknowledges the routes of the move.
    const at = (address: string) => ({ domains: ["d.example.com"], endpoints: [{ address, port: 80 }] });
    const { store, server, connect } = await setup({ old: at("10.0.0.1") });
    const client = connect();
    await synced(client, 1);
    client.holdAcks(TYPES.route);
    store.removeService("old");
    store.setService("new", at("10.0.0.2"));
    store.commit();
    await client.waitUntil("routes to new, not acknowledged", (c) => Object.keys(c.virtualHosts()).join() === "new");
    // Routes go once endpoints are sent, not acknowledged: the EDS ACK may still be on its way.
    const inFlight = () => [...server.streams()].flatMap((stream) => [...stream.unanswered()].map((push) => TYPE_NAMES[push.typeUrl]));
    await waitFor("the EDS ACK to reach the server", () => (inFlight().includes("EDS") ? undefined : true));
    assert.deepEqual(inFlight(), ["RDS"], "the stream knows what Envoy has not answered");
    store.removeService("new");
    store.setService("old", at("10.0.0.1"));
    store.commit();
    await sleep(200);
    assert.ok(client.names(TYPES.cluster).includes("new"), "the routes Envoy applied keep their cluster until it acknowledges newer ones");
    client.release(TYPES.route);
    await client.waitUntil("only old, routed", (c) => c.names(TYPES.cluster).join() === "old" && Object.keys(c.virtualHosts()).join() === "old");
  });

  it("keeps a NACKing Envoy on its last good config, never resends the rejected version, and recovers", async () => {
    const { store, events, connect } = await setup({ a: record(1) });
    const client = connect({ nack: (type, names) => (type === TYPES.cluster && names.includes("b") ? "cluster rejected on purpose" : undefined) });
    await synced(client, 1);
    const from = events.length;
    store.setService("b", record(2));
    store.commit();
    await client.waitUntil("the NACK", () => events.some((e) => e.kind === "nack"));
    await sleep(300);
    const later = events.slice(from);
    assert.equal(later.filter((e) => e.kind === "push" && e.type === "CDS").length, 1, "the rejected version was sent once");
    assert.equal(later.filter((e) => e.kind === "push" && e.type === "RDS").length, 0, "routes to the rejected cluster were held back");
    assert.deepEqual(client.names(TYPES.cluster), ["a"]);
    assert.deepEqual(Object.keys(client.virtualHosts()), ["a"]);

    store.removeService("b");
    store.setService("a", record(1, 7777));
    store.commit();
    await client.waitUntil("the fixed config", (c) => c.endpoints("a")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue === 7777);
  });

  it("ignores requests with a stale nonce", async () => {
    const { events, connect } = await setup({ a: record(1) });
    const client = connect();
    await synced(client, 1);
    const responses = client.responses.length;
    client.acknowledge(TYPES.cluster, "not-the-latest");
    await sleep(200);
    assert.equal(client.responses.length, responses);
    assert.ok(events.some((e) => e.kind === "stale" && e.type === "CDS"));
  });

  it("serves many streams the same bytes", async () => {
    const { store, connect } = await setup({ a: record(1) });
    const clients = Array.from({ length: 20 }, (_, i) => connect({ nodeId: `envoy-${i}` }));
    await Promise.all(clients.map((c) => synced(c, 1)));
    store.setService("b", record(2));
    store.commit();
    await Promise.all(clients.map((c) => synced(c, 2)));
    const nonces = new Set(clients.map((c) => c.responses.find((r) => r.typeUrl === TYPES.cluster && r.names.includes("b"))!.nonce));
    assert.equal(nonces.size, 1, "one shared response body (nonce included) served every stream");
    assert.equal(new Set(clients.map((c) => c.version(TYPES.route))).size, 1);
  });
});
}

describe("ADS state of the world only", () => {
  const setup = (services: Record<string, ServiceRecord>) => setupWith(services, { protocol: "sotw" });

  it("answers a changed subscription with the newly subscribed resources, at the same version", async () => {
    const { connect } = await setup({ a: record(1), b: record(2) });
    const client = connect();
    await synced(client, 2);
    const version = client.version(TYPES.endpoint);
    const from = client.responses.length;
    client.request(TYPES.endpoint, ["a"]);
    await sleep(100);
    assert.equal(client.responses.length, from, "unsubscribing needs no response");
    client.request(TYPES.endpoint, ["a", "b"]);
    await client.waitUntil("the resubscribed endpoints", (c) => c.responses.length > from);
    assert.deepEqual(client.responses.at(-1), { ...client.responses.at(-1)!, typeUrl: TYPES.endpoint, version, names: ["b"], removed: [] });
    // Once more, at the same version, while other streams hold both subscriptions (so the bodies
    // for them are shared): the same content again, under a nonce of its own.
    const holdsBoth = connect();
    const holdsA = connect();
    await Promise.all([synced(holdsBoth, 2), synced(holdsA, 2)]);
    holdsA.request(TYPES.endpoint, ["a"]);
    await sleep(100);
    const first = client.responses.at(-1)!;
    const nonces = new Set([first.nonce]);
    for (let round = 1; round <= 3; round++) {
      const before = client.responses.length;
      client.request(TYPES.endpoint, ["a"]);
      await sleep(50);
      client.request(TYPES.endpoint, ["a", "b"]);
      await client.waitUntil(`the endpoints resubscribed again, round ${round}`, (c) => c.responses.length > before);
      const again = client.responses.at(-1)!;
      assert.deepEqual([again.typeUrl, again.version, again.names], [first.typeUrl, first.version, first.names]);
      nonces.add(again.nonce);
    }
    assert.equal(nonces.size, 4, "a nonce of its own each time");
  });

  it("does not resend clusters or listeners to an Envoy that reconnects with the current versions", async () => {
    const { connect } = await setup({ a: record(1) });
    const client = connect();
    await synced(client, 1);
    const from = client.responses.length;
    client.reconnect();
    await client.waitUntil("endpoints and routes again", (c) => c.responses.length >= from + 2);
    await sleep(100);
    assert.deepEqual(client.responses.slice(from).map((r) => TYPE_NAMES[r.typeUrl]).sort(), ["EDS", "RDS"]);
  });
});

describe("ADS delta only", () => {
  const setup = (services: Record<string, ServiceRecord>) => setupWith(services, { protocol: "delta" });

  it("sends only the changed service's resources, and removals as removed_resources", async () => {
    const services = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`s${i}`, record(i + 1)]));
    const { store, connect } = await setup(services);
    const client = connect();
    await synced(client, 20);
    let from = client.responses.length;
    store.setService("s3", { ...record(4), domains: ["s4.example.com", "alias.example.com"] });
    store.commit();
    await client.waitUntil("the new domain", (c) => c.virtualHosts()["s3"]?.length === 2);
    assert.deepEqual(client.responses.slice(from).map(shape), ["RDS:envoyage_http"]);

    from = client.responses.length;
    store.setService("s5", record(6, 9999));
    store.commit();
    await client.waitUntil("the new port", (c) => c.endpoints("s5")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue === 9999);
    assert.deepEqual(client.responses.slice(from).map(shape), ["EDS:s5"]);

    from = client.responses.length;
    store.setService("s20", record(21));
    store.commit();
    await synced(client, 21);
    assert.deepEqual(client.responses.slice(from).map(shape), ["CDS:s20", "EDS:s20", "RDS:envoyage_http"]);

    from = client.responses.length;
    store.removeService("s7");
    store.commit();
    await client.waitUntil("s7 to go", (c) => !c.names(TYPES.cluster).includes("s7"));
    assert.deepEqual(client.responses.slice(from).map(shape), ["RDS:envoyage_http", "CDS:-s7"], "endpoints go with their cluster");
  });

  it("sends a resource unsubscribed and subscribed again, however often, at the same version", async () => {
    const { connect } = await setup({ a: record(1), b: record(2) });
    const client = connect();
    // Other streams hold both subscriptions, so the bodies for them are shared.
    const holdsBoth = connect();
    const holdsB = connect();
    await Promise.all([synced(client, 2), synced(holdsBoth, 2), synced(holdsB, 2)]);
    holdsB.subscribe(TYPES.endpoint, [], ["a"]);
    await sleep(50);
    for (let round = 1; round <= 3; round++) {
      const from = client.responses.length;
      client.subscribe(TYPES.endpoint, [], ["a"]);
      await sleep(50);
      client.subscribe(TYPES.endpoint, ["a"]);
      await client.waitUntil(`a again, round ${round}`, (c) => c.responses.slice(from).some((r) => r.typeUrl === TYPES.endpoint && r.names.includes("a")));
    }
  });

  it("resends a resource unsubscribed and subscribed again while a response was in flight", async () => {
    const { store, connect } = await setup({ a: record(1), b: record(2) });
    const client = connect();
    await synced(client, 2);
    store.setService("b", record(2, 4444));
    store.commit(); // EDS:b is on its way: Envoy drops a and asks for it again before its ACK
    client.subscribe(TYPES.endpoint, [], ["a"]);
    client.subscribe(TYPES.endpoint, ["a"]);
    const from = client.responses.length;
    await client.waitUntil("a again", (c) => c.responses.slice(from).some((r) => r.typeUrl === TYPES.endpoint && r.names.includes("a")));
  });

  it("starts over an Envoy that NACKed for longer than removals are kept, and it then drops what was removed meanwhile", async (t) => {
    const { store, events, connect } = await setup({ a: record(1), b: record(2) });
    const client = connect({ nack: (type, names) => (type === TYPES.cluster && names.includes("poison") ? "cluster rejected on purpose" : undefined) });
    await synced(client, 2);
    store.setService("poison", record(3));
    store.removeService("b");
    store.commit();
    await client.waitUntil("the NACK", () => events.some((e) => e.kind === "nack"));
    // Past the time removals are kept, more changes than the change log holds.
    t.mock.timers.enable({ apis: ["Date"], now: Date.now() + 6 * 60_000 });
    const added = Array.from({ length: 130 }, (_, i) => `t${i}`);
    for (const [i, name] of added.entries()) {
      store.setService(name, record(10 + i));
      store.commit();
    }
    t.mock.timers.reset();
    store.removeService("poison");
    store.commit();
    const dropped = await waitFor("the stream to be dropped", () => client.error);
    assert.match(dropped.message, /too far behind to tell Envoy what to remove/);
    assert.ok(client.names(TYPES.cluster).includes("b"), "the NACKs kept b");

    client.reconnect();
    const want = ["a", ...added].sort().join();
    await client.waitUntil("b removed, the rest added", (c) => c.names(TYPES.cluster).join() === want);
  });

  it("resends nothing unchanged to an Envoy that reconnects with initial_resource_versions", async () => {
    const { store, connect } = await setup({ a: record(1), b: record(2), c: record(3) });
    const client = connect();
    await synced(client, 3);
    client.disconnect();
    store.setService("b", record(2, 4444)); // changed while Envoy was away
    store.removeService("c");
    store.commit();
    const from = client.responses.length;
    client.reconnect();
    await client.waitUntil("the changes", (c) => c.names(TYPES.cluster).join() === "a,b" && Object.keys(c.virtualHosts()).length === 2);
    await sleep(100);
    // c goes once routes without it are acknowledged: the routes Envoy holds from before may use it.
    assert.deepEqual(client.responses.slice(from).map(shape), ["EDS:b", "RDS:envoyage_http", "CDS:-c"]);
  });

  it("keeps, for an Envoy failing over mid-change, the cluster its routes from the other replica still use until routes without it are acknowledged", async () => {
    const { store, connect } = await setup({ a: record(1), c: record(3) });
    const client = connect();
    await synced(client, 2);
    // c's domain moves to b: Envoy holds b's cluster and acknowledged it, but the routes that
    // move the domain were sent on a stream that died before Envoy acknowledged them.
    client.disconnect();
    store.setService("b", { ...record(3), endpoints: record(2).endpoints });
    store.removeService("c");
    store.commit();
    const from = client.responses.length;
    client.reconnect();
    await client.waitUntil("c removed", (c) => c.names(TYPES.cluster).join() === "a,b" && Object.keys(c.virtualHosts()).length === 2);
    await sleep(100);
    // Its removal waits for the ACK of the routes (the client acknowledges each response as it takes it).
    assert.deepEqual(client.responses.slice(from).map(shape), ["CDS:b", "EDS:b", "RDS:envoyage_http", "CDS:-c"]);
  });
});

describe("ADS fan-out", () => {
  it("brings every stream of a large fleet to the latest commit, also when a commit lands while the last is being pushed", async () => {
    const { store, connect } = await setupWith({ a: record(1) });
    // More streams than one turn of the event loop pumps (PUMP_BATCH in ads/server.ts).
    const fleet = Array.from({ length: 150 }, (_, i) => connect({ nodeId: `envoy-${i}` }));
    await Promise.all(fleet.map((client) => synced(client, 1)));
    const port = (client: AdsClient) => client.endpoints("a")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue;
    store.setService("a", record(1, 7001));
    store.commit();
    store.setService("a", record(1, 7002)); // before the first commit has reached every stream
    store.commit();
    await Promise.all(fleet.map((client) => client.waitUntil("the latest port", (c) => port(c) === 7002, 10_000)));
    assert.ok(fleet.every((client) => port(client) === 7002));
  });

  it("keeps every stream of a large fleet updated while changes keep coming, the last to connect too", async () => {
    const { store, connect } = await setupWith({ a: record(1) });
    const fleet = Array.from({ length: 150 }, (_, i) => connect({ nodeId: `envoy-${i}` }));
    await Promise.all(fleet.map((client) => synced(client, 1)));
    await sleep(500); // every stream idle, nothing in flight
    const before = fleet.map((client) => client.responses.length);
    // A commit every turn of the event loop: faster than one turn pumps the whole fleet.
    for (let i = 0; i < 100; i++) {
      store.setService("a", record(1, 7100 + i));
      store.commit();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const starved = fleet.map((client, i) => client.responses.length - before[i]!).filter((received) => received === 0).length;
    assert.equal(starved, 0, `${starved} of ${fleet.length} streams got nothing while the changes kept coming`);
  });
});

describe("ADS (sotw): NACKed bodies", () => {
  it("never re-sends a NACKed body, also when Envoy goes back to the subscription it was NACKed with", async () => {
    const { store, events, connect } = await setupWith({ a: record(1), b: record(2) });
    let rejecting = false;
    const client = connect({ nack: (type, names) => (rejecting && type === TYPES.endpoint && names.includes("a") ? "endpoints rejected on purpose" : undefined) });
    await synced(client, 2);
    rejecting = true;
    const from = events.length;
    store.setService("a", record(1, 7001));
    store.setService("b", record(2, 7002));
    store.commit();
    const nacks = () => events.slice(from).filter((e) => e.kind === "nack").length;
    await client.waitUntil("the NACK", () => nacks() === 1);
    client.request(TYPES.endpoint, ["a"]); // another subscription: its body is NACKed too
    await client.waitUntil("the second NACK", () => nacks() === 2);
    client.request(TYPES.endpoint, ["a", "b"]); // back to the first subscription
    await sleep(300);
    const pushes = events.slice(from).filter((e) => e.kind === "push" && e.type === "EDS");
    assert.deepEqual(pushes.map((e) => e.names), [2, 1], "each rejected body was sent once");
  });
});

describe("ADS: a stream whose handling fails", () => {
  it("ends with UNAVAILABLE, so its Envoy reconnects, and the server goes on serving", async () => {
    const failures: unknown[] = [];
    let failing = true;
    const { server, connect } = await setupWith(
      { a: record(1) },
      {
        overrides: {
          error: (_stream, error) => void failures.push(error),
          push: () => {
            if (failing) throw new Error("a bug while pushing");
          },
        },
      },
    );
    const dropped = connect();
    await waitFor("the stream to end with a status", () => dropped.error, { timeoutMs: 5000 });
    assert.equal((dropped.error as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
    assert.match((dropped.error as grpc.ServiceError).details, /internal error/);
    assert.equal(failures.length, 1);
    assert.equal(server.streamCount, 0);
    failing = false;
    dropped.reconnect();
    await synced(dropped, 1);
  });
});

describe("ADS: addresses", () => {
  it("serves on an IPv6 address (XDS_HOST=::1)", async () => {
    const { connect } = await setupWith({ a: record(1) }, { host: "::1" });
    await synced(connect(), 1);
  });
});

describe("ADS: shutdown", () => {
  it("ends every stream, and pushes a commit made during the grace period on none of them", async () => {
    const disconnects: string[] = [];
    const { store, server, events, connect } = await setupWith({ a: record(1) }, { overrides: { disconnect: (_stream, reason) => void disconnects.push(reason) } });
    const client = connect();
    await synced(client, 1);
    const stopping = server.shutdown(2000);
    assert.deepEqual(disconnects, ["the replica is shutting down"]);
    assert.equal(server.streamCount, 0);
    const pushed = events.filter((e) => e.kind === "push").length;
    store.setService("b", record(2));
    store.commit();
    await sleep(100);
    assert.equal(events.filter((e) => e.kind === "push").length, pushed, "nothing pushed after the streams ended");
    assert.deepEqual(disconnects, ["the replica is shutting down"], "each stream closed once");
    client.close();
    await stopping;
  });
});
