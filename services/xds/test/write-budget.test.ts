import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { WriteBudget } from "../src/ads/write-budget.js";

/** A stream whose writes flush when the test says so. */
function stream() {
  const written: number[] = [];
  const unflushed: (() => void)[] = [];
  return {
    written,
    flushOne: () => unflushed.shift()!(),
    writer: (bytes: Buffer, flushed: () => void) => {
      written.push(bytes.length);
      unflushed.push(flushed);
    },
  };
}

describe("WriteBudget", () => {
  it("writes at once while within the budget, one write per stream at a time", () => {
    const budget = new WriteBudget(100);
    const [a, b] = [stream(), stream()];
    budget.write(a, Buffer.alloc(40), a.writer);
    budget.write(b, Buffer.alloc(50), b.writer);
    budget.write(a, Buffer.alloc(10), a.writer); // waits for a's first write, not for the budget
    assert.deepEqual([a.written, b.written, budget.queued], [[40], [50], 0]);
    assert.equal(budget.inFlightBytes, 90);
    a.flushOne();
    assert.deepEqual(a.written, [40, 10]);
    assert.equal(budget.inFlightBytes, 60);
  });

  it("holds writes beyond the budget until earlier ones flush, streams in the order they asked", () => {
    const budget = new WriteBudget(100);
    const [a, b, c] = [stream(), stream(), stream()];
    budget.write(a, Buffer.alloc(80), a.writer);
    budget.write(b, Buffer.alloc(50), b.writer);
    budget.write(c, Buffer.alloc(10), c.writer); // fits, but waits behind b
    assert.deepEqual([b.written, c.written, budget.queued], [[], [], 2]);
    a.flushOne();
    assert.deepEqual([b.written, c.written, budget.queued], [[50], [10], 0]);
    assert.equal(budget.inFlightBytes, 60);
  });

  it("lets a write larger than the whole budget go alone", () => {
    const budget = new WriteBudget(100);
    const [a, b] = [stream(), stream()];
    budget.write(a, Buffer.alloc(500), a.writer);
    budget.write(b, Buffer.alloc(1), b.writer);
    assert.deepEqual([a.written, b.written], [[500], []]);
    a.flushOne();
    assert.deepEqual(b.written, [1]);
  });

  it("gives back a closed stream's bytes and drops its waiting writes", () => {
    const budget = new WriteBudget(100);
    const [a, b] = [stream(), stream()];
    budget.write(a, Buffer.alloc(100), a.writer);
    budget.write(a, Buffer.alloc(100), a.writer);
    budget.write(b, Buffer.alloc(30), b.writer);
    assert.deepEqual(b.written, []);
    budget.forget(a);
    assert.deepEqual([a.written, b.written], [[100], [30]]);
    assert.equal(budget.inFlightBytes, 30);
    a.flushOne(); // a flush reported after the close changes nothing
    assert.equal(budget.inFlightBytes, 30);
  });

  it("does not let a stream that stops reading hold the others up", async () => {
    const dropped: object[] = [];
    const budget = new WriteBudget(100, { stallMs: 20, onStall: (owner) => dropped.push(owner) });
    const slow = stream();
    const other: number[] = []; // a stream that reads: its writes flush at once
    const reading = (bytes: Buffer, flushed: () => void) => {
      other.push(bytes.length);
      flushed();
    };
    budget.write(slow, Buffer.alloc(100), slow.writer);
    budget.write(reading, Buffer.alloc(10), reading);
    assert.deepEqual(other, []);
    await sleep(60);
    assert.deepEqual(other, [10], "the stalled write stopped counting");
    assert.deepEqual([budget.stalled, budget.inFlightBytes, dropped], [1, 0, [slow]], "its owner was told to drop it");
    budget.write(reading, Buffer.alloc(90), reading);
    assert.deepEqual(other, [10, 90]);
    budget.forget(slow);
    assert.equal(budget.inFlightBytes, 0);
  });
});
