// ADS events as log lines: every push and ACK at debug, with what follows one change to one
// Envoy; nothing built for them at the default level.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { TYPES } from "@envoyage/test-support";
import pino from "pino";
import { loggingEvents } from "../src/ads-log.js";
import type { AdsStream } from "../src/ads/stream.js";

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { lines, events: loggingEvents(pino({ level }, sink)) };
}

const stream = { nodeId: "envoy-1", protocol: "sotw" } as AdsStream;
const body = { bytes: Buffer.alloc(0), nonce: "n1", version: "v1", count: 3, removed: 0 };

/** A stream opens, gets a push and ACKs it; resolves once pino has written the lines. */
async function pushAndAck(level: string) {
  const { lines, events } = capture(level);
  events.connect(stream, "127.0.0.1:5000");
  events.push(stream, TYPES.cluster, body);
  events.ack(stream, TYPES.cluster, "v1", "n1");
  await new Promise((resolve) => setImmediate(resolve));
  return lines;
}

describe("loggingEvents", () => {
  it("logs pushes and ACKs at debug with node, type, version and nonce", async () => {
    const lines = await pushAndAck("debug");
    const [push, ack] = lines.filter((line) => line.msg === "push" || line.msg === "ACK");
    assert.deepEqual([push?.node, push?.type, push?.version, push?.nonce, push?.resources], ["envoy-1", "CDS", "v1", "n1", 3]);
    assert.deepEqual([ack?.msg, ack?.stream, ack?.version], ["ACK", push?.stream, "v1"]);
  });

  it("logs neither at info", async () => {
    const lines = await pushAndAck("info");
    assert.deepEqual(lines.map((line) => line.msg), ["ADS stream opened"]);
  });
});
