// A Replica in this process against a real nats-server: a claim written by hand for a service
// that never was goes to the service serving its domain, which keeps the domain when a record
// for the claim's holder shows up.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { KV } from "@nats-io/kv";
import { claimKey, encodeRecord } from "@envoyage/registry";
import { sleep, waitFor } from "@envoyage/test-support";
import { CLUSTER_TYPE } from "../src/ads/resources.js";
import type { Replica } from "../src/replica.js";
import { SnapshotStore } from "../src/snapshot.js";
import { startInProcessReplica, type InProcessReplica } from "./support/replica.js";

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
