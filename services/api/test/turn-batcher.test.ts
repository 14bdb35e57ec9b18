// TurnBatcher: operations in flight together start together; a lone one is not delayed.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TurnBatcher } from "../src/turn-batcher.js";

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("TurnBatcher", () => {
  it("starts a lone operation at once", async () => {
    const batcher = new TurnBatcher();
    let started = false;
    const done = batcher.run(async () => {
      started = true;
      return 42;
    });
    assert.equal(started, true, "the operation waited although nothing else was in flight");
    assert.equal(await done, 42);
  });

  it("holds operations that arrive while another is in flight, then starts them in the same turn", async () => {
    const batcher = new TurnBatcher();
    let release!: () => void;
    const first = batcher.run(() => new Promise<void>((resolve) => (release = resolve)));
    const started: string[] = [];
    const second = batcher.run(async () => void started.push("second"));
    const third = batcher.run(async () => void started.push("third"));
    await Promise.resolve();
    assert.deepEqual(started, [], "operations started before the turn ended");
    await nextTurn();
    assert.deepEqual(started, ["second", "third"]);
    release();
    await Promise.all([first, second, third]);
  });

  it("counts failed operations out, so the next lone one starts at once again", async () => {
    const batcher = new TurnBatcher();
    await assert.rejects(batcher.run(() => Promise.reject(new Error("NATS said no"))), /NATS said no/);
    let started = false;
    const done = batcher.run(async () => void (started = true));
    assert.equal(started, true);
    await done;
  });
});
