import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CommitScheduler } from "../src/commit-scheduler.js";

/** A scheduler with no entries pending; `commits()` counts the commits it ran. */
function counting(standbyMs: number, standby: () => boolean) {
  let commits = 0;
  const scheduler = new CommitScheduler({ batch: { windowMs: 50, burst: 20, standbyMs }, commit: () => commits++, standby, pendingEntries: () => 0 });
  return { scheduler, commits: () => commits };
}

describe("CommitScheduler", () => {
  it("runs a standby's delayed commit at once when an Envoy connects, and only once", async () => {
    const { scheduler, commits } = counting(60_000, () => true);
    scheduler.entryArrived();
    scheduler.schedule();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(commits(), 0, "a standby waits");
    scheduler.flush();
    assert.equal(commits(), 1, "an Envoy connecting does not wait");
    scheduler.flush();
    scheduler.schedule();
    await new Promise((resolve) => setImmediate(resolve));
    scheduler.flush();
    assert.equal(commits(), 2, "nothing runs twice; a new change is scheduled again");
  });

  it("runs no commit once stopped, neither one waiting for its window nor one about to run", async () => {
    let standby = true;
    const { scheduler, commits } = counting(30, () => standby);
    scheduler.entryArrived();
    scheduler.schedule();
    scheduler.stop();
    standby = false;
    scheduler.schedule();
    await new Promise((resolve) => setTimeout(resolve, 60));
    scheduler.flush();
    assert.equal(commits(), 0);
  });
});
