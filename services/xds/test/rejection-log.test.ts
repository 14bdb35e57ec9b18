// Rejected records as log lines: one line each up to the window's budget, then one line per
// commit counting the rest, and one by one again in the next window.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { LOGGED_PER_WINDOW, RejectionLog, WINDOW_MS } from "../src/rejection-log.js";

function capture() {
  const lines: { msg: string; service?: string; more?: number; servingRevision?: number | null }[] = [];
  let now = 0;
  const log = new RejectionLog(pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) }), () => now);
  return { lines, log, advance: (ms: number) => void (now += ms) };
}
const invalid = (revision: number) => ({ state: "invalid" as const, revision, problem: "/endpoints must NOT have fewer than 1 items", servingRevision: undefined });

describe("RejectionLog", () => {
  it("says whether the last good revision keeps serving, for invalid and conflicting records", () => {
    const { lines, log } = capture();
    log.rejected("a", invalid(3));
    log.rejected("b", { state: "conflict", revision: 4, conflicts: [{ domain: "x.example.com", heldBy: "c" }], servingRevision: 2 });
    log.commitDone();
    assert.deepEqual(
      lines.map((l) => [l.service, l.msg, l.servingRevision]),
      [
        ["a", "rejected an invalid record; the service is not served", null],
        ["b", "rejected a record claiming domains another service holds; the last good revision keeps serving", 2],
      ],
    );
  });

  it("logs a burst of thousands in the window's budget plus one line per commit, and one by one again after the window", () => {
    const { lines, log, advance } = capture();
    for (let commit = 0; commit < 3; commit++) {
      for (let i = 0; i < 1000; i++) log.rejected(`bad-${commit}-${i}`, invalid(i));
      log.commitDone();
      advance(50);
    }
    assert.equal(lines.filter((l) => l.service !== undefined).length, LOGGED_PER_WINDOW);
    assert.deepEqual(lines.filter((l) => l.more !== undefined).map((l) => l.more), [1000 - LOGGED_PER_WINDOW, 1000, 1000]);
    log.commitDone();
    assert.equal(lines.length, LOGGED_PER_WINDOW + 3, "a commit with nothing left unlogged adds no line");

    advance(WINDOW_MS);
    log.rejected("later", invalid(9));
    log.commitDone();
    assert.equal(lines.at(-1)!.service, "later");
  });
});
