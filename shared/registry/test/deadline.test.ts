// within(): the work's result if it comes in time, TIMED_OUT otherwise, and no unhandled
// rejection from work that lost the race.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { TIMED_OUT, within } from "../src/deadline.js";

describe("within", () => {
  it("gives the work's result, or its rejection, when it settles in time", async () => {
    assert.equal(await within(Promise.resolve(7), 1000), 7);
    await assert.rejects(within(Promise.reject(new Error("refused")), 1000), /refused/);
  });

  it("gives TIMED_OUT when the time runs out first, and a later rejection goes unreported", async () => {
    let unhandled: unknown;
    const onUnhandled = (reason: unknown) => (unhandled = reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      assert.equal(await within(sleep(200).then(() => Promise.reject(new Error("late"))), 10), TIMED_OUT);
      await sleep(300);
      assert.equal(unhandled, undefined);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
