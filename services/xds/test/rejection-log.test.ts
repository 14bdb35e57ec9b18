// Rejected records as log lines: one line each up to the window's budget, then one line at the
// window's end counting the rest — however the rejections come, in one commit or one at a time.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import pino from "pino";
import { LOGGED_PER_WINDOW, RejectionLog, WINDOW_MS } from "../src/rejection-log.js";

function capture() {
  const lines: { msg: string; service?: string; more?: number; servingRevision?: number | null }[] = [];
  const log = new RejectionLog(pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) }), () => Date.now());
  return { lines, log };
}
const invalid = (revision: number) => ({ state: "invalid" as const, revision, problem: "/endpoints must not be empty", servingRevision: undefined });

describe("RejectionLog", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  it("says whether the last good revision keeps serving, for invalid and conflicting records", () => {
    const { lines, log } = capture();
    log.rejected("a", invalid(3));
    log.rejected("b", { state: "conflict", revision: 4, conflicts: [{ domain: "x.example.com", heldBy: "c" }], servingRevision: 2 });
    assert.deepEqual(
      lines.map((l) => [l.service, l.msg, l.servingRevision]),
      [
        ["a", "rejected an invalid record; the service is not served", null],
        ["b", "rejected a record claiming domains another service holds; the last good revision keeps serving while it stays in the key's history (10 revisions in Envoyage's bucket: fix the record before as many more writes to it)", 2],
      ],
    );
  });

  it("logs records rejected one at a time within the window's budget, then one line for the rest when the window ends", () => {
    const { lines, log } = capture();
    // As `nats kv put` in a loop writes them: one record per commit, 3 ms apart.
    for (let i = 0; i < 3000; i++) {
      log.rejected(`bad-${i}`, invalid(i));
      mock.timers.tick(3);
    }
    // 9 s in: the first window holds 20 lines and has not ended.
    assert.equal(lines.length, LOGGED_PER_WINDOW);
    mock.timers.tick(WINDOW_MS);
    assert.equal(lines.length, LOGGED_PER_WINDOW + 1);
    assert.equal(lines.at(-1)!.more, 3000 - LOGGED_PER_WINDOW);
    assert.match(lines.at(-1)!.msg, /^2980 more records were rejected/);

    log.rejected("later", invalid(9));
    assert.equal(lines.at(-1)!.service, "later", "one by one again in a new window");
  });

  it("says what it did not log yet when the replica stops", () => {
    const { lines, log } = capture();
    for (let i = 0; i <= LOGGED_PER_WINDOW; i++) log.rejected(`bad-${i}`, invalid(i));
    log.stop();
    assert.equal(lines.at(-1)!.more, 1);
    mock.timers.tick(WINDOW_MS);
    assert.equal(lines.length, LOGGED_PER_WINDOW + 1, "nothing more once stopped");
  });
});
