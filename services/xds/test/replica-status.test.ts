// What a replica reports of its rejected services: built again only once it committed since.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Replica } from "../src/replica.js";
import { rejectedServicesByCommit } from "../src/replica-status.js";

describe("rejectedServicesByCommit", () => {
  it("gives the same object until the replica commits again, then one with what it rejects now", () => {
    let rejected: string[] = ["bad"];
    const replica = {
      commits: 1,
      failedValidation: new Map<string, string[]>(),
      registry: {
        rejected: () => rejected,
        status: (name: string) => ({ state: "invalid", revision: 7, problem: `${name} is bad`, servingRevision: undefined }),
        served: () => new Map(),
      },
    };
    const current = rejectedServicesByCommit(replica as unknown as Replica);
    const first = current();
    assert.deepEqual(Object.keys(first), ["bad"]);
    rejected = [];
    assert.equal(current(), first, "no commit since: the same object, so the publisher writes nothing");
    replica.commits++;
    assert.deepEqual(current(), {});
  });
});
