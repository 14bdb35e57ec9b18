import assert from "node:assert/strict";
import { describe, it } from "node:test";
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
  it("writes at once while within the budget", () => {
    const budget = new WriteBudget(100);
    const a = stream();
    budget.write(a, Buffer.alloc(40), a.writer);
    budget.write(a, Buffer.alloc(60), a.writer);
    assert.deepEqual(a.written, [40, 60]);
    assert.equal(budget.inFlightBytes, 100);
  });

  it("holds writes beyond the budget until earlier ones flush, in order", () => {
    const budget = new WriteBudget(100);
    const [a, b] = [stream(), stream()];
    budget.write(a, Buffer.alloc(80), a.writer);
    budget.write(b, Buffer.alloc(50), b.writer);
    budget.write(a, Buffer.alloc(10), a.writer); // fits, but waits behind b's write
    assert.deepEqual([a.written, b.written, budget.queued], [[80], [], 2]);
    a.flushOne();
    assert.deepEqual([a.written, b.written, budget.queued], [[80, 10], [50], 0]);
    assert.equal(budget.inFlightBytes, 60);
  });

  it("lets a write larger than the whole budget go alone", () => {
    const budget = new WriteBudget(100);
    const a = stream();
    budget.write(a, Buffer.alloc(500), a.writer);
    budget.write(a, Buffer.alloc(1), a.writer);
    assert.deepEqual(a.written, [500]);
    a.flushOne();
    assert.deepEqual(a.written, [500, 1]);
  });

  it("gives back a closed stream's bytes and drops its queued writes", () => {
    const budget = new WriteBudget(100);
    const [a, b] = [stream(), stream()];
    budget.write(a, Buffer.alloc(100), a.writer);
    budget.write(a, Buffer.alloc(100), a.writer);
    budget.write(b, Buffer.alloc(30), b.writer);
    budget.forget(a);
    assert.deepEqual([a.written, b.written], [[100], [30]]);
    assert.equal(budget.inFlightBytes, 30);
    a.flushOne(); // a flush reported after the close changes nothing
    assert.equal(budget.inFlightBytes, 30);
  });
});
