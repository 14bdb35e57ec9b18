// Envoys sharing a node id on one replica: said once while they share it, again if it happens again.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TYPES } from "@envoyage/test-support";
import pino from "pino";
import type { AdsStream } from "../src/ads/stream.js";
import { sharedNodeIdEvents } from "../src/shared-node-ids.js";

const body = { bytes: Buffer.alloc(0), nonce: "n1", version: "v1", count: 1, removed: 0 };
const stream = (nodeId: string) => ({ nodeId, protocol: "sotw" }) as AdsStream;

describe("sharedNodeIdEvents", () => {
  it("warns once when a second stream presents a node id, not for pushes after it nor for other ids", () => {
    const warnings: { node: string; msg: string }[] = [];
    const events = sharedNodeIdEvents(pino({ level: "warn" }, { write: (line: string) => warnings.push(JSON.parse(line)) }));
    const [a, b, c, other] = [stream("edge"), stream("edge"), stream("edge"), stream("edge-2")];
    for (const s of [a, other, a, other]) events.push!(s, TYPES.cluster, body);
    assert.equal(warnings.length, 0, "one stream per node id");
    events.push!(b, TYPES.cluster, body);
    events.push!(b, TYPES.endpoint, body);
    events.push!(c, TYPES.cluster, body);
    assert.deepEqual(warnings.map((w) => w.node), ["edge"]);
    assert.match(warnings[0]!.msg, /same node id/);

    // Down to one stream, then a second again (another Envoy with the copied bootstrap started).
    events.disconnect!(b, "closed by Envoy");
    events.disconnect!(c, "closed by Envoy");
    events.push!(stream("edge"), TYPES.cluster, body);
    assert.equal(warnings.length, 2);
  });

  it("takes a stream as identified only once it has a node id", () => {
    const warnings: unknown[] = [];
    const events = sharedNodeIdEvents(pino({ level: "warn" }, { write: (line: string) => warnings.push(line) }));
    const anonymous = stream("");
    events.push!(anonymous, TYPES.cluster, body);
    events.push!(stream("edge"), TYPES.cluster, body);
    anonymous.nodeId = "edge";
    events.push!(anonymous, TYPES.cluster, body);
    assert.equal(warnings.length, 1);
  });
});
