// A Replica in this process against a real nats-server, with a snapshot store whose route
// configuration limit is small: a service the store refuses is reported, keeps Envoy's previous
// config, and goes through by itself once room is freed.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { KV } from "@nats-io/kv";
import { encodeRecord, type ServiceRecord } from "@envoyage/registry";
import { waitFor } from "@envoyage/test-support";
import { CLUSTER_TYPE } from "../src/ads/resources.js";
import type { Replica } from "../src/replica.js";
import { SnapshotStore } from "../src/snapshot.js";
import { startInProcessReplica, type InProcessReplica } from "./support/replica.js";

let running: InProcessReplica;
let kv: KV;
let replica: Replica;
let store: SnapshotStore;

/** About 60 bytes of virtual host per domain. */
const wide = (name: string, count: number): ServiceRecord => ({
  domains: Array.from({ length: count }, (_, i) => `${name}-${i}-${"x".repeat(40)}.example.com`),
  endpoints: [{ address: "10.0.0.1", port: 1 }],
});

before(async () => {
  running = await startInProcessReplica(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000, maxRouteConfigurationBytes: 4096 }));
  ({ kv, replica, store } = running);
});

after(async () => {
  await running?.stop();
});

describe("services the snapshot store refuses", () => {
  it("are reported, and go through once another service frees the room", async () => {
    await kv.put("services.a", encodeRecord(wide("a", 30)));
    await waitFor("a to be served", () => (store.resources(CLUSTER_TYPE).has("a") ? true : undefined));
    await kv.put("services.b", encodeRecord(wide("b", 40)));
    await waitFor("b to be refused", () => (replica.failedValidation.has("b") ? true : undefined));
    assert.match(replica.failedValidation.get("b")!.join(), /over 4096/);
    assert.equal(store.resources(CLUSTER_TYPE).has("b"), false);

    await kv.delete("services.a");
    await waitFor("b to go through", () => (store.resources(CLUSTER_TYPE).has("b") ? true : undefined));
    assert.equal(replica.failedValidation.has("b"), false, "no longer reported");
  });
});
