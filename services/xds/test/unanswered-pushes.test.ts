// Pushes Envoy leaves unanswered are logged once, and their answer after.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { CLUSTER_TYPE, ENDPOINT_TYPE } from "../src/ads/resources.js";
import type { AdsStream } from "../src/ads/stream.js";
import { UNANSWERED_AFTER_MS, UnansweredPushes } from "../src/unanswered-pushes.js";

function setup() {
  const lines: { msg: string; type?: string; node?: string; seconds?: number }[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const pushes = new UnansweredPushes(logger);
  const events = pushes.events();
  const stream = { nodeId: "envoy-1" } as AdsStream;
  const body = { version: "v1", nonce: "n", bytes: Buffer.alloc(0), count: 1, removed: 0 };
  return { lines, pushes, events, stream, body };
}

describe("unanswered pushes", () => {
  it("logs a push left unanswered once, and its answer when it comes", () => {
    const { lines, pushes, events, stream, body } = setup();
    events.push!(stream, CLUSTER_TYPE, body);
    events.push!(stream, ENDPOINT_TYPE, body);
    events.ack!(stream, ENDPOINT_TYPE, "v1", "n");
    const pushed = performance.now();
    pushes.check(pushed + UNANSWERED_AFTER_MS - 100);
    assert.equal(lines.length, 0, "not before it is due");
    pushes.check(pushed + UNANSWERED_AFTER_MS + 100);
    pushes.check(pushed + UNANSWERED_AFTER_MS + 2000);
    assert.deepEqual(
      lines.map((l) => [l.type, l.node]),
      [["CDS", "envoy-1"]],
      "the CDS push only (the endpoints were answered), once",
    );
    assert.match(lines[0]!.msg, /has not answered a push/);
    events.ack!(stream, CLUSTER_TYPE, "v1", "n");
    assert.match(lines[1]!.msg, /answered the push at last/);
    pushes.check(pushed + UNANSWERED_AFTER_MS * 3);
    assert.equal(lines.length, 2);
  });

  it("forgets the pushes of a stream that closed, and says nothing of pushes answered in time", () => {
    const { lines, pushes, events, stream, body } = setup();
    events.push!(stream, CLUSTER_TYPE, body);
    events.nack!(stream, CLUSTER_TYPE, "v1", "n", "rejected");
    events.push!(stream, ENDPOINT_TYPE, body);
    events.disconnect!(stream, "closed by Envoy");
    pushes.check(performance.now() + UNANSWERED_AFTER_MS * 2);
    assert.equal(lines.length, 0);
  });
});
