// What a replica logs about a service rewritten with invalid values until its last good revision
// leaves the key's history: one line per revision, saying what is served once the history lookup
// has said it — never "the last good revision keeps serving" followed by "not served" for the
// same revision.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { BUCKET_HISTORY, encodeRecord } from "@envoyage/registry";
import { waitFor } from "@envoyage/test-support";
import { CLUSTER_TYPE } from "../src/ads/resources.js";
import { SnapshotStore } from "../src/snapshot.js";
import { startInProcessReplica, type InProcessReplica } from "./support/replica.js";

interface Line {
  service?: string;
  revision?: number;
  servingRevision?: number | null;
  msg: string;
}

const lines: Line[] = [];
const capture = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const text of chunk.toString().split("\n")) if (text) lines.push(JSON.parse(text) as Line);
    done();
  },
});

let running: InProcessReplica;
before(async () => {
  running = await startInProcessReplica(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }), pino({ level: "warn" }, capture));
});
after(async () => {
  await running?.stop();
});

describe("a service rewritten with invalid values", () => {
  it("is logged once per revision, with what serves it, until its last good revision leaves the history", async () => {
    const { kv, replica, store } = running;
    const good = await kv.put("services.hist", encodeRecord({ domains: ["hist.test"], endpoints: [{ address: "10.0.0.1", port: 80 }] }));
    await waitFor("hist to be served", () => (store.resources(CLUSTER_TYPE).has("hist") ? true : undefined));
    let last = good;
    for (let i = 0; i < BUCKET_HISTORY; i++) {
      last = await kv.put("services.hist", `{"bad":${i}}`);
      const revision = last;
      await waitFor(`revision ${revision} to be logged`, () => (lines.some((line) => line.revision === revision) ? true : undefined));
    }
    await waitFor("hist to stop being served", () => (store.resources(CLUSTER_TYPE).has("hist") ? undefined : true));
    const about = lines.filter((line) => line.service === "hist");
    const revisions = about.map((line) => line.revision);
    assert.deepEqual(revisions, [...new Set(revisions)], `one line per revision: ${JSON.stringify(about)}`);
    assert.ok(about.slice(0, -1).every((line) => line.servingRevision === good), JSON.stringify(about));
    assert.deepEqual(about.at(-1), { ...about.at(-1), revision: last, servingRevision: null, msg: "rejected an invalid record; the service is not served" });
    assert.equal(replica.registry.status("hist")?.state, "invalid");
  });
});
