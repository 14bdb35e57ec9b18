// Bucket keys the registry does not take: why each is ignored (pure), and a replica against a real
// nats-server listing them until they are deleted, while a claim naming no service is taken over
// by the service that serves its domain.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Logger } from "pino";
import { encodeRecord, parseKey } from "@envoyage/registry";
import { waitFor } from "@envoyage/test-support";
import { CLUSTER_TYPE } from "../src/ads/resources.js";
import { IGNORED_KEYS_LISTED, IgnoredKeys, ignoredBecause } from "../src/ignored-keys.js";
import { SnapshotStore } from "../src/snapshot.js";
import { startInProcessReplica, type InProcessReplica } from "./support/replica.js";

const bytes = (text: string) => new TextEncoder().encode(text);
const why = (key: string, value: string | undefined, holder?: string) =>
  ignoredBecause(key, parseKey(key), value === undefined ? undefined : bytes(value), holder);

describe("ignoredBecause", () => {
  it("says why a key outside the layout, a refused name or a claim naming no service is ignored", () => {
    assert.match(why("service.web", "{}")!, /outside the registry layout: .*services\.<name> and domains\.<domain>/);
    assert.equal(why("services.Web", "{}"), '"Web" is not a service name (a lowercase DNS label)');
    assert.equal(why("domains.UPPER.test", "web"), '"UPPER.test" is not a domain (a lowercase hostname)');
    assert.match(why("domains.a.test", '{"owner":"web"}', '{"owner":"web"}')!, /the claim names no service \("\{\\"owner\\":\\"web\\"\}" is not a service name\)/);
    assert.match(why("domains.a.test", "", "")!, /\(""\ is not a service name\)/);
  });

  it("takes records, valid claims and deletions, whatever their value", () => {
    assert.equal(why("services.web", "not json"), undefined, "an invalid record is rejected as a service, not ignored as a key");
    assert.equal(why("domains.a.test", "web", "web"), undefined);
    assert.equal(why("domains._.a.test", "web", "web"), undefined);
    assert.equal(why("random.key", undefined), undefined);
  });
});

describe("IgnoredKeys", () => {
  it("lists at most IGNORED_KEYS_LISTED keys, in key order, counts them all, and warns one by one about as many", () => {
    const warnings: string[] = [];
    const logger = { warn: (_fields: object, message: string) => void warnings.push(message) } as unknown as Logger;
    const keys = new IgnoredKeys(logger);
    for (let i = IGNORED_KEYS_LISTED + 4; i > 0; i--) keys.set(`k.${String(i).padStart(3, "0")}`, i, "p");
    assert.equal(keys.count, IGNORED_KEYS_LISTED + 4);
    const listed = Object.keys(keys.listed());
    assert.equal(listed.length, IGNORED_KEYS_LISTED);
    assert.equal(listed[0], "k.001");
    assert.equal(warnings.length, IGNORED_KEYS_LISTED + 1);
    assert.match(warnings.at(-1)!, /not logged one by one: GET \/status counts and lists them/);
    keys.set("k.001", 200, undefined);
    assert.equal(keys.count, IGNORED_KEYS_LISTED + 3);
    keys.clear();
    assert.equal(keys.count, 0);
  });
});

describe("a replica", () => {
  let running: InProcessReplica;
  before(async () => {
    running = await startInProcessReplica(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }));
  });
  after(async () => {
    await running?.stop();
  });

  it("lists the keys it ignores until they are deleted, and takes over a claim that names no service", async () => {
    const { kv, replica, store } = running;
    await kv.put("service.web", encodeRecord({ domains: ["typo.test"], endpoints: [{ address: "10.0.0.1", port: 80 }] }));
    await kv.put("services.Upper", encodeRecord({ domains: ["upper.test"], endpoints: [{ address: "10.0.0.1", port: 80 }] }));
    await kv.put("domains.web.test", '{"owner":"web"}');
    const listed = await waitFor("three ignored keys", () => (replica.ignoredKeys.count === 3 ? replica.ignoredKeys.listed() : undefined));
    assert.deepEqual(Object.keys(listed), ["domains.web.test", "service.web", "services.Upper"]);
    assert.equal(store.resources(CLUSTER_TYPE).size, 0, "none of them is served");

    await kv.put("services.web", encodeRecord({ domains: ["web.test"], endpoints: [{ address: "10.0.0.1", port: 80 }] }));
    await waitFor("web to be served and hold its claim", async () => ((await kv.get("domains.web.test"))?.string() === "web" ? true : undefined));
    await kv.delete("service.web");
    await kv.delete("services.Upper");
    await waitFor("no ignored key left", () => (replica.ignoredKeys.count === 0 ? true : undefined));
    assert.equal(store.resources(CLUSTER_TYPE).has("web"), true);
  });
});
