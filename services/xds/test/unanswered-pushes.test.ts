// Pushes Envoy leaves unanswered are logged once, and their answer after; a fleet in the same
// state is one summary line past the first few.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { CLUSTER_TYPE, ENDPOINT_TYPE } from "../src/ads/resources.js";
import type { AdsStream } from "../src/ads/stream.js";
import { LOGGED_PER_CHECK, UNANSWERED_AFTER_MS, UnansweredPushes } from "../src/unanswered-pushes.js";

function setup() {
  const lines: { msg: string; type?: string; node?: string; more?: number }[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const pushes = new UnansweredPushes(logger);
  const events = pushes.events();
  const body = { version: "v1", nonce: "n", bytes: Buffer.alloc(0), count: 1, removed: 0 };
  const stream = (node: string) => ({ nodeId: node }) as AdsStream;
  /** Checks every second from `from` to `until`, as the replica's timer does. */
  const checkEverySecond = (from: number, until: number) => {
    for (let at = from; at <= until; at += 1000) pushes.check(at);
  };
  return { lines, pushes, events, body, stream, checkEverySecond };
}

describe("unanswered pushes", () => {
  it("logs a push left unanswered once, and its answer when it comes", () => {
    const { lines, events, body, stream, checkEverySecond } = setup();
    const envoy = stream("envoy-1");
    const pushed = performance.now();
    events.push!(envoy, CLUSTER_TYPE, body);
    events.push!(envoy, ENDPOINT_TYPE, body);
    events.ack!(envoy, ENDPOINT_TYPE, "v1", "n");
    checkEverySecond(pushed, pushed + UNANSWERED_AFTER_MS - 1000);
    assert.equal(lines.length, 0, "not before it is due");
    checkEverySecond(pushed + UNANSWERED_AFTER_MS + 1000, pushed + UNANSWERED_AFTER_MS + 5000);
    assert.deepEqual(
      lines.map((l) => [l.type, l.node]),
      [["CDS", "envoy-1"]],
      "the CDS push only (the endpoints were answered), once",
    );
    assert.match(lines[0]!.msg, /no answer to a push/);
    events.ack!(envoy, CLUSTER_TYPE, "v1", "n");
    assert.match(lines[1]!.msg, /answered the push at last/);
  });

  it("lists the first few of a fleet one by one, counts the rest in one line, and logs only their answers", () => {
    const { lines, events, body, stream, checkEverySecond } = setup();
    const envoys = Array.from({ length: LOGGED_PER_CHECK + 5 }, (_, i) => stream(`envoy-${i}`));
    const pushed = performance.now();
    for (const envoy of envoys) events.push!(envoy, CLUSTER_TYPE, body);
    checkEverySecond(pushed, pushed + UNANSWERED_AFTER_MS + 3000);
    assert.equal(lines.length, LOGGED_PER_CHECK + 1);
    assert.equal(lines.at(-1)!.more, 5);
    for (const envoy of envoys) events.ack!(envoy, CLUSTER_TYPE, "v1", "n");
    assert.equal(lines.filter((l) => /at last/.test(l.msg)).length, LOGGED_PER_CHECK);
  });

  it("says nothing right after the event loop lagged (answers may be unread), nor of a stream that closed", () => {
    const { lines, pushes, events, body, stream, checkEverySecond } = setup();
    const envoy = stream("envoy-1");
    const pushed = performance.now();
    events.push!(envoy, CLUSTER_TYPE, body);
    pushes.check(pushed + UNANSWERED_AFTER_MS + 10_000); // the first check in 15 s
    assert.equal(lines.length, 0);
    const other = stream("envoy-2");
    events.push!(other, ENDPOINT_TYPE, body);
    events.disconnect!(other, "closed by Envoy");
    events.disconnect!(envoy, "closed by Envoy");
    checkEverySecond(pushed + UNANSWERED_AFTER_MS + 11_000, pushed + UNANSWERED_AFTER_MS + 14_000);
    assert.equal(lines.length, 0);
  });
});
