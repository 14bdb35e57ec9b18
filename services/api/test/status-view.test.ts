// The API's view of sync status, on a real nats-server: rejected services read from every page a
// replica writes, pages deleted or rewritten taken into account, and nothing read for a replica
// that does not report.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { NatsLink, openStatusBucket, rejectedPageKey, replicaReportKey, type RejectedService } from "@envoyage/registry";
import { startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import pino from "pino";
import { StatusView } from "../src/status-view.js";

const invalid = (revision: number): RejectedService => ({ state: "invalid", revision, problem: `bad ${revision}`, servingRevision: null });
const page = (services: Record<string, RejectedService>) => JSON.stringify({ rejected: services });
const report = (replica: string, revision: number) => JSON.stringify({ replica, updatedAt: new Date().toISOString(), ready: true, revision });

describe("StatusView: rejected services", () => {
  let nats: NatsServer;
  let link: NatsLink;
  let kv: KV;
  let view: StatusView;

  before(async () => {
    nats = await startNats();
    link = new NatsLink({ servers: [nats.url], name: "status-view-test", logger: pino({ level: "silent" }) });
    const open = async () => openStatusBucket(jetstream(await link.connect()), "status-view-test", 1);
    kv = await open();
    view = new StatusView({ link, bucket: "status-view-test", timeoutMs: 2000, logger: pino({ level: "silent" }), open });
    await view.start();
  });

  after(async () => {
    await view?.stop();
    await link?.close();
    await nats?.stop();
  });

  const state = (name: string, revision: number) => view.serviceStatus(name, revision, []).state;

  it("finds a rejected service on any page of a replica, and only at the revision rejected", async () => {
    await kv.put(rejectedPageKey("xds-1", 0), page({ a: invalid(10), b: invalid(11) }));
    await kv.put(rejectedPageKey("xds-1", 1), page({ c: invalid(12) }));
    await kv.put(rejectedPageKey("xds-1", 2), page({ d: invalid(13) }));
    await kv.put(replicaReportKey("xds-1"), report("xds-1", 20));
    await waitFor("the view to read the report", async () => (state("d", 13) === "invalid" ? true : undefined));
    assert.deepEqual([state("a", 10), state("b", 11), state("c", 12)], ["invalid", "invalid", "invalid"]);
    assert.equal(state("c", 14), "serving", "a later revision of c is not the one rejected");
    assert.equal(view.serviceStatus("a", 10, []).problem, "bad 10");
  });

  it("drops what a deleted or rewritten page no longer says", async () => {
    await kv.delete(rejectedPageKey("xds-1", 2));
    await kv.put(rejectedPageKey("xds-1", 1), page({}));
    await waitFor("c and d no longer rejected", async () => (state("c", 12) === "serving" && state("d", 13) === "serving" ? true : undefined));
    assert.equal(state("a", 10), "invalid");
  });

  it("reads nothing for a replica that does not report, and pending while no replica has the revision", async () => {
    await kv.put(rejectedPageKey("xds-9", 0), page({ e: invalid(15) }));
    await kv.put(replicaReportKey("xds-1"), report("xds-1", 21));
    await waitFor("the newer report", async () => (state("x", 21) === "serving" ? true : undefined));
    assert.equal(state("e", 15), "serving", "xds-9 has no report: its pages do not count");
    assert.equal(state("x", 22), "pending");
  });
});
