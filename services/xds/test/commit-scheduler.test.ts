import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CommitScheduler } from "../src/commit-scheduler.js";

describe("CommitScheduler", () => {
  it("runs a standby's delayed commit at once when an Envoy connects, and only once", async () => {
    let commits = 0;
    const scheduler = new CommitScheduler({
      batch: { windowMs: 50, burst: 20, standbyMs: 60_000 },
      commit: () => commits++,
      standby: () => true,
      pendingEntries: () => 0,
    });
    scheduler.entryArrived();
    scheduler.schedule();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(commits, 0, "a standby waits");
    scheduler.flush();
    assert.equal(commits, 1, "an Envoy connecting does not wait");
    scheduler.flush();
    scheduler.schedule();
    await new Promise((resolve) => setImmediate(resolve));
    scheduler.flush();
    assert.equal(commits, 2, "nothing runs twice; a new change is scheduled again");
  });

  it("runs no commit once stopped, neither one waiting for its window nor one about to run", async () => {
    let commits = 0;
    let standby = true;
    const scheduler = new CommitScheduler({
      batch: { windowMs: 50, burst: 20, standbyMs: 30 },
      commit: () => commits++,
      standby: () => standby,
      pendingEntries: () => 0,
    });
    scheduler.entryArrived();
    scheduler.schedule();
    scheduler.stop();
    standby = false;
    scheduler.schedule();
    await new Promise((resolve) => setTimeout(resolve, 60));
    scheduler.flush();
    assert.equal(commits, 0);
  });
});
