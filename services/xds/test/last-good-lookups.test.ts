// History lookups as the replica schedules them: results reach the registry only for the bucket
// they were asked of, and the readiness count forgets what was cleared.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger, encodeRecord, type BucketEntry } from "@envoyage/registry";
import { BULK_AT, CONCURRENCY, LastGoodLookups } from "../src/last-good-lookups.js";
import type { EffectiveRecord } from "../src/registry.js";

const entry = (revision: number, domains: string[] | undefined): BucketEntry => ({
  key: "services.web",
  revision,
  value: domains && new TextEncoder().encode(encodeRecord({ domains, endpoints: [{ address: "10.0.0.1", port: 80 }] })),
  created: new Date(0),
});

function lookups() {
  const answers: ((entries: BucketEntry[]) => void)[] = [];
  const settled: { name: string; latest: number; older: number[] }[] = [];
  const pool = new LastGoodLookups({
    history: () => new Promise<BucketEntry[]>((resolve) => answers.push(resolve)),
    wanted: () => true,
    settled: (name, latest, older: EffectiveRecord[]) => settled.push({ name, latest, older: older.map((o) => o.revision) }),
    logger: createLogger("xds", "silent"),
  });
  return { pool, answers, settled };
}

describe("LastGoodLookups", () => {
  it("settles the valid revisions before the latest, newest first, back to the last delete", async () => {
    const { pool, answers, settled } = lookups();
    pool.request("web", "services.web", 9);
    assert.equal(pool.pending, 1);
    answers[0]!([entry(9, ["web.com"]), entry(7, ["web.com"]), entry(6, []), entry(5, ["web.com"]), entry(4, undefined), entry(2, ["web.com"])]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(settled, [{ name: "web", latest: 9, older: [7, 5] }]);
    assert.equal(pool.pending, 0);
  });

  it("drops what was asked before clear(): it settles nothing and no longer counts as pending", async () => {
    const { pool, answers, settled } = lookups();
    pool.request("web", "services.web", 5); // running
    for (let i = 0; i < CONCURRENCY; i++) pool.request(`queued${i}`, `services.queued${i}`, 5); // all but one run, one queued
    pool.clear(); // the bucket was created again
    assert.equal(pool.pending, 0, "nothing the new bucket waits for");
    pool.request("web", "services.web", 5); // the new bucket's web, at the same revision: waits for a free slot
    assert.equal(pool.pending, 1);
    answers[0]!([entry(5, ["new.com"]), entry(2, ["old.com"])]); // the old bucket's answer
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(settled, [], "the deleted bucket's history reaches nobody");
    answers[CONCURRENCY]!([entry(5, ["new.com"]), entry(3, ["new.com"])]); // the new one's, started in the freed slot
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(settled, [{ name: "web", latest: 5, older: [3] }]);
  });

  it("gives the slots of cleared lookups waiting out their backoff back at once, not when their wait ends", async () => {
    let failing = true;
    const settled: string[] = [];
    const pool = new LastGoodLookups({
      history: async () => {
        if (failing) throw new Error("NATS unreachable");
        return [entry(5, ["new.com"]), entry(3, ["new.com"])];
      },
      wanted: () => true,
      settled: (name) => settled.push(name),
      logger: createLogger("xds", "silent"),
    });
    for (let i = 0; i < CONCURRENCY; i++) pool.request(`old${i}`, `services.old${i}`, 5); // every slot, backing off from 0.5 s up
    await new Promise((resolve) => setTimeout(resolve, 100));
    failing = false;
    pool.clear(); // the bucket was created again
    pool.request("web", "services.web", 5);
    const started = performance.now();
    while (settled.length === 0 && performance.now() - started < 2000) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(settled, ["web"]);
    assert.ok(performance.now() - started < 300, `the new bucket's lookup waited ${Math.round(performance.now() - started)} ms for a slot`);
  });

  it("answers a load's thousands of lookups from one read of every history, and one by one where that cannot be read", async () => {
    const LOAD = CONCURRENCY + BULK_AT;
    for (const bulk of [true, false]) {
      let histories = 0;
      let oneByOne = 0;
      const settled = new Map<string, number[]>();
      const keyed = (key: string, revisions: number[]) => revisions.map((revision) => ({ ...entry(revision, revision % 2 ? ["web.com"] : []), key }));
      const pool = new LastGoodLookups({
        history: async (key) => {
          oneByOne++;
          return keyed(key, [9, 7]);
        },
        histories: async () => {
          histories++;
          return bulk ? new Map(Array.from({ length: LOAD }, (_, i): [string, BucketEntry[]] => [`services.s${i}`, keyed(`services.s${i}`, [9, 7, 6, 5])])) : undefined;
        },
        wanted: () => true,
        settled: (name, _latest, older) => settled.set(name, older.map((o) => o.revision)),
        logger: createLogger("xds", "silent"),
      });
      // As a replica's load asks them, all at once: the first fill the slots, the queued rest are read at once.
      for (let i = 0; i < LOAD; i++) pool.request(`s${i}`, `services.s${i}`, 9);
      while (pool.pending > 0) await new Promise((resolve) => setTimeout(resolve, 1));
      assert.equal(histories, 1);
      assert.equal(oneByOne, bulk ? CONCURRENCY : LOAD, bulk ? "only those started before the queue was long" : "the fallback");
      assert.equal(settled.size, LOAD);
      assert.deepEqual(settled.get(`s${LOAD - 1}`), bulk ? [7, 5] : [7]);
    }
  });
});
