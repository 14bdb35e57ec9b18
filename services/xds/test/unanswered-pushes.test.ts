// Pushes Envoy leaves unanswered are logged once, and their answer after; a fleet in the same
// state is one summary line past the first few.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { CLUSTER_TYPE, ENDPOINT_TYPE } from "../src/ads/resources.js";
import type { AdsStream } from "../src/ads/stream.js";
import { LOGGED_PER_CHECK, UNANSWERED_AFTER_MS, UnansweredPushes } from "../src/unanswered-pushes.js";

/** A stream as the checker sees it: its node and the responses in flight, by type. */
class FakeStream {
  readonly inFlight = new Map<string, { nonce: string; sentAt: number }>();
  constructor(readonly nodeId: string) {}
  *unanswered() {
    for (const [typeUrl, { nonce, sentAt }] of this.inFlight) yield { typeUrl, version: "v1", nonce, sentAt };
  }
}

function setup() {
  const lines: { msg: string; type?: string; node?: string; more?: number }[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const streams = new Set<FakeStream>();
  const pushes = new UnansweredPushes(logger, () => streams as unknown as Set<AdsStream>);
  const events = pushes.events();
  const stream = (node: string) => {
    const fake = new FakeStream(node);
    streams.add(fake);
    return fake;
  };
  const push = (fake: FakeStream, typeUrl: string) => fake.inFlight.set(typeUrl, { nonce: `${fake.nodeId}-${typeUrl}`, sentAt: performance.now() });
  const answer = (fake: FakeStream, typeUrl: string, how: "ack" | "nack" = "ack") => {
    const { nonce } = fake.inFlight.get(typeUrl)!;
    fake.inFlight.delete(typeUrl);
    if (how === "ack") events.ack!(fake as unknown as AdsStream, typeUrl, "v1", nonce);
    else events.nack!(fake as unknown as AdsStream, typeUrl, "v1", nonce, "rejected");
  };
  const close = (fake: FakeStream) => {
    streams.delete(fake);
    events.disconnect!(fake as unknown as AdsStream, "closed by Envoy");
  };
  /** Checks every second from `from` to `until`, as the replica's timer does. */
  const checkEverySecond = (from: number, until: number) => {
    for (let at = from; at <= until; at += 1000) pushes.check(at);
  };
  return { lines, pushes, stream, push, answer, close, checkEverySecond };
}

describe("unanswered pushes", () => {
  it("logs a push left unanswered once, and its answer when it comes", () => {
    const { lines, stream, push, answer, checkEverySecond } = setup();
    const envoy = stream("envoy-1");
    const pushed = performance.now();
    push(envoy, CLUSTER_TYPE);
    push(envoy, ENDPOINT_TYPE);
    answer(envoy, ENDPOINT_TYPE);
    checkEverySecond(pushed, pushed + UNANSWERED_AFTER_MS - 1000);
    assert.equal(lines.length, 0, "not before it is due");
    checkEverySecond(pushed + UNANSWERED_AFTER_MS + 1000, pushed + UNANSWERED_AFTER_MS + 5000);
    assert.deepEqual(
      lines.map((l) => [l.type, l.node]),
      [["CDS", "envoy-1"]],
      "the CDS push only (the endpoints were answered), once",
    );
    assert.match(lines[0]!.msg, /no answer to a push/);
    answer(envoy, CLUSTER_TYPE);
    assert.match(lines[1]!.msg, /answered the push at last/);
  });

  it("lists the first few of a fleet one by one, counts the rest in one line, and logs only their answers", () => {
    const { lines, stream, push, answer, checkEverySecond } = setup();
    const envoys = Array.from({ length: LOGGED_PER_CHECK + 5 }, (_, i) => stream(`envoy-${i}`));
    const pushed = performance.now();
    for (const envoy of envoys) push(envoy, CLUSTER_TYPE);
    checkEverySecond(pushed, pushed + UNANSWERED_AFTER_MS + 3000);
    assert.equal(lines.length, LOGGED_PER_CHECK + 1);
    assert.equal(lines.at(-1)!.more, 5);
    for (const envoy of envoys) answer(envoy, CLUSTER_TYPE);
    assert.equal(lines.filter((l) => /at last/.test(l.msg)).length, LOGGED_PER_CHECK);
  });

  it("says nothing right after the event loop lagged (answers may be unread), nor of a stream that closed", () => {
    const { lines, pushes, stream, push, answer, close, checkEverySecond } = setup();
    const envoy = stream("envoy-1");
    const pushed = performance.now();
    push(envoy, CLUSTER_TYPE);
    pushes.check(pushed + UNANSWERED_AFTER_MS + 10_000); // the first check in 15 s
    assert.equal(lines.length, 0);
    const other = stream("envoy-2");
    push(other, ENDPOINT_TYPE);
    answer(other, ENDPOINT_TYPE, "nack");
    close(other);
    close(envoy);
    checkEverySecond(pushed + UNANSWERED_AFTER_MS + 11_000, pushed + UNANSWERED_AFTER_MS + 14_000);
    assert.equal(lines.length, 0);
  });
});
