// A Replica in this process against a real nats-server: a claim written by hand for a service
// that never was goes to the service serving its domain, which keeps the domain when a record
// for the claim's holder shows up.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { claimKey, createLogger, encodeRecord, NatsLink, openBucket, registrySettings } from "@envoyage/registry";
import { sleep, startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import { CLUSTER_TYPE } from "../src/ads/resources.js";
import { Replica } from "../src/replica.js";
import { SnapshotStore } from "../src/snapshot.js";

let nats: NatsServer;
let nc: NatsConnection;
let kv: KV;
let link: NatsLink;
let replica: Replica;
let store: SnapshotStore;

before(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  ({ kv } = await openBucket(nc, { bucket: "envoyage", create: true, timeoutMs: 2000 }));
  const logger = createLogger("xds", "silent");
  link = new NatsLink({ servers: [nats.url], name: "claims-test", logger });
  store = new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 });
  replica = new Replica({
    link,
    settings: registrySettings({ NATS_URL: nats.url }),
    logger,
    store,
    batch: { windowMs: 50, burst: 20, standbyMs: 0 },
    served: () => true,
  });
  void replica.start();
  await waitFor("the replica to be ready", () => (replica.ready ? true : undefined));
});

after(async () => {
  await replica?.stop();
  await link?.close();
  await nc?.close();
  await nats?.stop();
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
