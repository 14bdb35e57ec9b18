import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "../src/registry.js";

const json = (domains: string[], address = "10.0.0.1") =>
  new TextEncoder().encode(JSON.stringify({ domains, endpoints: [{ address, port: 80 }] }));

function served(registry: Registry): Record<string, string[]> {
  return Object.fromEntries([...registry.served()].map(([name, e]) => [name, e.record.domains]));
}

describe("Registry", () => {
  it("serves valid records and stops serving deleted ones", () => {
    const registry = new Registry();
    registry.setService("web", 1, json(["web.example.com"]));
    assert.deepEqual(registry.resolve().changes, [{ name: "web", record: { domains: ["web.example.com"], endpoints: [{ address: "10.0.0.1", port: 80 }] } }]);
    registry.setService("web", 2, undefined);
    assert.deepEqual(registry.resolve().changes, [{ name: "web", record: undefined }]);
    assert.equal(registry.status("web"), undefined);
  });

  it("forgets a bucket created again: serves what the new one holds, decided by its claims alone", () => {
    const registry = new Registry();
    registry.setService("a", 1, json(["a.com"]));
    registry.setService("b", 2, json(["shared.com"]));
    registry.setClaim("shared.com", "b", 3);
    registry.setService("c", 4, json(["shared.com", "c.com"]));
    registry.resolve();
    assert.deepEqual(served(registry), { a: ["a.com"], b: ["shared.com"] });
    registry.forgetAll();
    // The new bucket: c first, b later, no claims. What the old claim decided no longer holds.
    registry.setService("c", 1, json(["shared.com", "c.com"]));
    registry.setService("b", 2, json(["shared.com"]));
    const { changes } = registry.resolve();
    assert.deepEqual(served(registry), { c: ["shared.com", "c.com"] });
    assert.deepEqual(changes.map((c) => [c.name, c.record !== undefined]).sort(), [["a", false], ["b", false], ["c", true]]);
  });

  it("gives a contested domain to the record written first, and reports the loser", () => {
    const registry = new Registry();
    registry.setService("a", 5, json(["d.com", "a.com"]));
    registry.setService("b", 9, json(["d.com", "b.com"]));
    registry.resolve();
    assert.deepEqual(served(registry), { a: ["d.com", "a.com"] });
    assert.deepEqual(registry.status("b"), { state: "conflict", revision: 9, conflicts: [{ domain: "d.com", heldBy: "a" }], servingRevision: undefined });
    assert.deepEqual(registry.rejected(), ["b"]);
  });

  it("decides the same whatever order the entries arrive in", () => {
    const forward = new Registry();
    forward.setService("a", 5, json(["d.com"]));
    forward.setService("b", 9, json(["d.com"]));
    forward.resolve();
    const backward = new Registry();
    backward.setService("b", 9, json(["d.com"]));
    backward.resolve();
    backward.setService("a", 5, json(["d.com"]));
    backward.resolve();
    assert.deepEqual(served(forward), served(backward));
  });

  it("keeps a claimed domain with its holder even when the holder is updated later", () => {
    const registry = new Registry();
    registry.setService("a", 5, json(["d.com"]));
    registry.setClaim("d.com", "a", 6);
    registry.setService("b", 9, json(["d.com"]));
    registry.setService("a", 12, json(["d.com"], "10.0.0.2"));
    registry.resolve();
    assert.deepEqual(Object.keys(served(registry)), ["a"]);
    assert.equal(registry.status("b")?.state, "conflict");
  });

  it("hands a domain over when its holder drops it", () => {
    const registry = new Registry();
    registry.setService("a", 5, json(["d.com"]));
    registry.setService("b", 9, json(["d.com"]));
    registry.resolve();
    registry.setService("a", 10, json(["other.com"]));
    const { changes } = registry.resolve();
    assert.deepEqual(changes.map((c) => c.name).sort(), ["a", "b"]);
    assert.deepEqual(served(registry), { a: ["other.com"], b: ["d.com"] });
    assert.deepEqual(registry.rejected(), [], "b no longer conflicts");
  });

  it("keeps serving the last good revision when the latest value is invalid", () => {
    const registry = new Registry();
    registry.setService("web", 3, json(["web.example.com"]));
    registry.resolve();
    assert.equal(registry.setService("web", 4, new TextEncoder().encode("{not json")), true, "asks for a history lookup");
    assert.deepEqual(registry.resolve().changes, [], "nothing changes while the lookup runs");
    registry.setHistory("web", 4, [{ record: { domains: ["web.example.com"], endpoints: [{ address: "10.0.0.1", port: 80 }] }, revision: 3 }]);
    assert.deepEqual(registry.resolve().changes, [{ name: "web", record: { domains: ["web.example.com"], endpoints: [{ address: "10.0.0.1", port: 80 }] } }]);
    const status = registry.status("web");
    assert.equal(status?.state, "invalid");
    assert.deepEqual(registry.rejected(), ["web"]);
    assert.equal(status?.state === "invalid" && status.servingRevision, 3);
    assert.match(status?.state === "invalid" ? status.problem : "", /not UTF-8 JSON/);
  });

  it("serves nothing for an invalid service with no good revision, and ignores stale lookups", () => {
    const registry = new Registry();
    registry.setService("web", 4, new TextEncoder().encode('{"domains":[]}'));
    registry.setHistory("web", 4, []);
    assert.deepEqual(registry.resolve().changes, []);
    registry.setService("web", 6, json(["web.example.com"]));
    registry.setHistory("web", 4, []); // an answer for a superseded revision
    assert.equal(registry.resolve().changes[0]?.record?.domains[0], "web.example.com");
  });

  it("claims the served domains that have no claim, so an update of the holder cannot hand them over", () => {
    const registry = new Registry();
    registry.setService("a", 5, json(["d.com", "a.com"]));
    const { evaluated } = registry.resolve();
    assert.deepEqual(registry.claimsToWrite(evaluated), [
      { domain: "d.com", owner: "a", expectedRevision: 0 },
      { domain: "a.com", owner: "a", expectedRevision: 0 },
    ]);
    registry.setClaim("d.com", "a", 6);
    registry.setClaim("a.com", "a", 7);
    registry.setService("b", 9, json(["d.com"]));
    registry.setService("a", 12, json(["d.com", "a.com"], "10.0.0.2"));
    registry.resolve();
    assert.deepEqual(Object.keys(served(registry)), ["a"], "a keeps d.com although b's record is older now");
    assert.deepEqual(registry.claimsToWrite(), []);
  });

  describe("takes over, for the service serving a domain, a claim naming another service", () => {
    it("left by a holder rewritten without the domain, or deleted", () => {
      const registry = new Registry();
      registry.setService("a", 1, json(["d.com"]));
      registry.setService("gone", 2, json(["x.com"]));
      registry.setClaim("d.com", "a", 3);
      registry.setClaim("x.com", "gone", 4);
      registry.setService("b", 5, json(["d.com"]));
      registry.setService("c", 6, json(["x.com"]));
      registry.resolve();
      assert.deepEqual(served(registry), { a: ["d.com"], gone: ["x.com"] }, "the holders keep their domains");
      registry.setService("a", 7, json(["a.com"]));
      registry.setService("gone", 8, undefined);
      const { evaluated } = registry.resolve();
      assert.deepEqual(served(registry), { a: ["a.com"], b: ["d.com"], c: ["x.com"] });
      assert.deepEqual(
        registry.claimsToWrite(evaluated).filter((w) => w.domain !== "a.com"),
        [
          { domain: "d.com", owner: "b", expectedRevision: 3 },
          { domain: "x.com", owner: "c", expectedRevision: 4 },
        ],
      );
    });

    it("written by hand for a service that never was, which then cannot take the domain with a record of its own", () => {
      const registry = new Registry();
      registry.setClaim("d.com", "ghost", 1);
      registry.setService("w", 2, json(["d.com", "w.com"]));
      const { evaluated } = registry.resolve();
      assert.deepEqual(served(registry), { w: ["d.com", "w.com"] }, "the claim's holder does not list d.com: w serves it");
      assert.deepEqual(registry.claimsToWrite(evaluated), [
        { domain: "d.com", owner: "w", expectedRevision: 1 },
        { domain: "w.com", owner: "w", expectedRevision: 0 },
      ]);
      registry.setClaim("d.com", "w", 3);
      registry.setService("ghost", 4, json(["d.com"]));
      registry.resolve();
      assert.deepEqual(served(registry), { w: ["d.com", "w.com"] });
      assert.equal(registry.status("ghost")?.state, "conflict");
    });

    /** h holds d.com's claim, its latest value invalid and its history not in; s serves d.com meanwhile. */
    const awaitingHolderHistory = () => {
      const registry = new Registry();
      registry.setService("h", 2, new TextEncoder().encode("{not json"));
      registry.setClaim("d.com", "h", 1);
      registry.setService("s", 3, json(["d.com"]));
      registry.resolve();
      assert.deepEqual(registry.claimsToWrite(), [], "h's last good revision may list d.com");
      return registry;
    };
    const lastGood = (domains: string[]) => [{ record: { domains, endpoints: [{ address: "10.0.0.1", port: 80 }] }, revision: 0 }];

    it("but not while its holder's latest value is invalid and its history not in: it may ask for the domain", () => {
      const registry = awaitingHolderHistory();
      registry.setHistory("h", 2, lastGood(["d.com"]));
      registry.resolve();
      assert.deepEqual(served(registry), { h: ["d.com"] });
    });

    it("once the holder's history is in and does not list the domain: the server is evaluated again", () => {
      const registry = awaitingHolderHistory();
      registry.setHistory("h", 2, lastGood(["h.com"]));
      const { evaluated } = registry.resolve();
      assert.deepEqual(
        registry.claimsToWrite(evaluated).filter((w) => w.domain === "d.com"),
        [{ domain: "d.com", owner: "s", expectedRevision: 1 }],
        "the waiting takeover is due",
      );
    });

    it("but not for what is served from a bucket since deleted", () => {
      const registry = new Registry();
      registry.setService("w", 1, json(["d.com"]));
      registry.resolve();
      registry.forgetAll();
      assert.deepEqual(registry.claimsToWrite(), [], "the new bucket does not have w");
    });
  });

  describe("a conflicting record keeps its service on its last good revision", () => {
    const at = (revision: number, domains: string[], address = "10.0.0.1") => ({
      record: { domains, endpoints: [{ address, port: 80 }] },
      revision,
    });
    /** a serves a.com (rev 1, claimed), b serves b.com (claimed); the CLI rewrites a to take b.com too. */
    function rewrittenIntoConflict(): Registry {
      const registry = new Registry();
      registry.setService("a", 1, json(["a.com"]));
      registry.setService("b", 2, json(["b.com"]));
      registry.setClaim("a.com", "a", 3);
      registry.setClaim("b.com", "b", 4);
      registry.resolve();
      registry.setService("a", 5, json(["a.com", "b.com"], "10.0.0.5"));
      return registry;
    }

    it("keeps what it serves while the history is looked up, then serves the newest revision holding all its domains", () => {
      const registry = rewrittenIntoConflict();
      const first = registry.resolve();
      assert.deepEqual(first.historyLookups, [{ name: "a", revision: 5 }]);
      assert.deepEqual(first.changes, [], "a keeps rev 1 meanwhile");
      assert.deepEqual(registry.status("a"), { state: "conflict", revision: 5, conflicts: [{ domain: "b.com", heldBy: "b" }], servingRevision: 1 });
      registry.setHistory("a", 5, [at(1, ["a.com"])]);
      const second = registry.resolve();
      assert.deepEqual(second.historyLookups, [], "looked up once per revision");
      assert.deepEqual(served(registry), { a: ["a.com"], b: ["b.com"] });
      assert.equal(registry.served().get("a")?.revision, 1);
      assert.deepEqual(registry.rejected(), ["a"]);
    });

    it("decides the same in a replica that loads the bucket after the conflicting write", () => {
      const fresh = new Registry();
      fresh.setService("a", 5, json(["a.com", "b.com"], "10.0.0.5"));
      fresh.setService("b", 2, json(["b.com"]));
      fresh.setClaim("a.com", "a", 3);
      fresh.setClaim("b.com", "b", 4);
      assert.deepEqual(fresh.resolve().historyLookups, [{ name: "a", revision: 5 }]);
      assert.deepEqual(served(fresh), { b: ["b.com"] }, "nothing of a to keep before its history is in");
      fresh.setHistory("a", 5, [at(1, ["a.com"])]);
      fresh.resolve();
      const live = rewrittenIntoConflict();
      live.resolve();
      live.setHistory("a", 5, [at(1, ["a.com"])]);
      live.resolve();
      assert.deepEqual([...fresh.served()].sort(), [...live.served()].sort());
    });

    it("skips revisions listing a domain it does not hold, and serves nothing when none holds all", () => {
      const registry = rewrittenIntoConflict();
      registry.resolve();
      registry.setHistory("a", 5, [at(4, ["a.com", "c.com"]), at(1, ["a.com"])]);
      registry.resolve();
      assert.equal(registry.served().get("a")?.revision, 1, "c.com was never claimed by a");
      registry.setClaim("a.com", "someone-else", 6);
      registry.resolve();
      assert.deepEqual(served(registry), { b: ["b.com"] });
      assert.deepEqual(registry.status("a"), {
        state: "conflict",
        revision: 5,
        conflicts: [{ domain: "b.com", heldBy: "b" }],
        servingRevision: undefined,
      });
    });

    it("gives up a domain the latest record dropped once another service asks for it, never serving it twice", () => {
      const registry = new Registry();
      registry.setService("a", 1, json(["a.com", "d.com"]));
      registry.setService("b", 2, json(["b.com"]));
      registry.setClaim("a.com", "a", 3);
      registry.setClaim("d.com", "a", 4);
      registry.setClaim("b.com", "b", 5);
      registry.resolve();
      registry.setService("a", 6, json(["a.com", "b.com"])); // drops d.com, takes b.com: conflict
      registry.resolve();
      registry.setHistory("a", 6, [at(1, ["a.com", "d.com"])]);
      registry.resolve();
      assert.deepEqual(served(registry), { a: ["a.com", "d.com"], b: ["b.com"] }, "a keeps its last good revision");
      registry.setService("c", 7, json(["d.com"]));
      const { changes } = registry.resolve();
      assert.deepEqual(changes.map((c) => [c.name, c.record?.domains]).sort(), [["a", undefined], ["c", ["d.com"]]]);
      assert.deepEqual(registry.claimsToWrite(["c"]), [{ domain: "d.com", owner: "c", expectedRevision: 4 }], "a's claim is stale");
    });

    it("serves the latest record again once its conflict is gone", () => {
      const registry = rewrittenIntoConflict();
      registry.resolve();
      registry.setHistory("a", 5, [at(1, ["a.com"])]);
      registry.resolve();
      registry.setService("b", 7, undefined);
      registry.resolve();
      assert.deepEqual(served(registry), { a: ["a.com", "b.com"] });
      assert.deepEqual(registry.rejected(), []);
    });

    it("keeps its domains from a later record that conflicts itself (and so is never served)", () => {
      const registry = new Registry();
      registry.setService("a", 1, json(["a.com", "d.com"]));
      registry.setService("b", 2, json(["b.com"]));
      registry.setService("w", 3, json(["w.com"]));
      for (const [domain, owner, revision] of [["a.com", "a", 4], ["d.com", "a", 5], ["b.com", "b", 6], ["w.com", "w", 7]] as const) registry.setClaim(domain, owner, revision);
      registry.resolve();
      registry.setService("a", 8, json(["a.com", "b.com"]));
      registry.resolve();
      registry.setHistory("a", 8, [at(1, ["a.com", "d.com"])]);
      registry.resolve();
      registry.setService("y", 9, json(["d.com", "w.com"])); // loses w.com: never served, takes nothing
      registry.resolve();
      assert.deepEqual(served(registry), { a: ["a.com", "d.com"], b: ["b.com"], w: ["w.com"] });
      registry.setService("w", 10, undefined); // now y wins all it lists, d.com included
      registry.resolve();
      assert.deepEqual(served(registry), { b: ["b.com"], y: ["d.com", "w.com"] });
    });

    it("moves to a newer revision once it holds all of it (a late claim)", () => {
      const registry = rewrittenIntoConflict();
      registry.resolve();
      registry.setHistory("a", 5, [at(4, ["a.com", "c.com"]), at(1, ["a.com"])]);
      registry.resolve();
      assert.equal(registry.served().get("a")?.revision, 1);
      registry.setClaim("c.com", "a", 6);
      registry.resolve();
      assert.equal(registry.served().get("a")?.revision, 4);
    });

    it("gives up what it keeps during the lookup when another service wins a domain of it", () => {
      const registry = new Registry();
      registry.setService("a", 1, json(["a.com", "d.com"]));
      registry.setService("b", 2, json(["b.com"]));
      for (const [domain, owner, revision] of [["a.com", "a", 3], ["d.com", "a", 4], ["b.com", "b", 5]] as const) registry.setClaim(domain, owner, revision);
      registry.resolve();
      registry.setService("a", 6, json(["a.com", "b.com"])); // lookup pending: a keeps rev 1
      registry.resolve();
      registry.setService("c", 7, json(["d.com"]));
      registry.resolve();
      assert.deepEqual(served(registry), { b: ["b.com"], c: ["d.com"] }, "d.com is served once");
    });

    it("keeps nothing of a bucket created again while the new one's history is looked up", () => {
      const registry = rewrittenIntoConflict();
      registry.resolve();
      registry.setHistory("a", 5, [at(1, ["a.com"])]);
      registry.resolve();
      registry.forgetAll();
      registry.setService("b", 1, json(["b.com"]));
      registry.setService("a", 2, json(["a.com", "b.com"]));
      registry.setClaim("a.com", "a", 3);
      registry.setClaim("b.com", "b", 4);
      assert.deepEqual(registry.resolve().historyLookups, [{ name: "a", revision: 2 }]);
      assert.deepEqual(served(registry), { b: ["b.com"] }, "rev 1 of the deleted bucket is not a's history");
    });
  });

  it("decides as a replica that loads the bucket afterwards would, whatever the order of events (seeded random runs)", () => {
    for (let seed = 1; seed <= 300; seed++) checkAgainstFreshLoad(seed);
  });
});

/**
 * A model of the bucket (history of 10 per key) written at random by the API-less CLI, hand
 * claims and the replica's own claims; the registry follows it live, with history lookups
 * settling late and resolves in between. At every resolve no domain is served twice and no
 * conflicting record is served; the replica's own claim writes never move a served domain; at
 * the end, a registry that loads the bucket's latest values serves the same.
 */
function checkAgainstFreshLoad(seed: number): void {
  let state = seed;
  const random = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const names = ["a", "b", "c", "d"];
  const domains = ["w.com", "x.com", "y.com", "z.com"];
  const bucket = new Map<string, { revision: number; value: Uint8Array | string | undefined }[]>();
  let revision = 0;
  const write = (key: string, value: Uint8Array | string | undefined) => {
    const history = bucket.get(key) ?? [];
    history.push({ revision: ++revision, value });
    bucket.set(key, history.slice(-10));
  };
  const historyOf = (name: string, latest: number) => {
    const older = [];
    for (const { revision, value } of [...(bucket.get(`services.${name}`) ?? [])].reverse()) {
      if (revision >= latest) continue;
      if (value === undefined) break;
      const record = JSON.parse(new TextDecoder().decode(value as Uint8Array)) as { domains: string[] };
      if (record.domains.length > 0) older.push({ record: { domains: record.domains, endpoints: [{ address: "10.0.0.1", port: 80 }] }, revision });
    }
    return older;
  };
  const apply = (registry: Registry, lookups: { name: string; latest: number }[], key: string, entry: { revision: number; value: Uint8Array | string | undefined }) => {
    if (key.startsWith("services.")) {
      const name = key.slice("services.".length);
      if (registry.setService(name, entry.revision, entry.value as Uint8Array | undefined)) lookups.push({ name, latest: entry.revision });
    } else registry.setClaim(key.slice("domains.".length), entry.value as string | undefined, entry.revision);
  };
  const resolve = (registry: Registry, lookups: { name: string; latest: number }[]) => {
    for (const { name, revision } of registry.resolve().historyLookups) lookups.push({ name, latest: revision });
    const servedBy = new Map<string, string>();
    for (const [name, { record, revision }] of registry.served()) {
      for (const domain of record.domains) {
        assert.equal(servedBy.get(domain), undefined, `seed ${seed}: ${domain} served by ${servedBy.get(domain)} and ${name}`);
        servedBy.set(domain, name);
      }
      const status = registry.status(name);
      assert.ok(status?.state !== "conflict" || revision < status.revision, `seed ${seed}: the conflicting record of ${name} is served`);
    }
  };
  const settle = (registry: Registry, lookups: { name: string; latest: number }[], index: number) => {
    const [{ name, latest }] = lookups.splice(index, 1) as [{ name: string; latest: number }];
    if (registry.awaitsHistory(name, latest)) registry.setHistory(name, latest, historyOf(name, latest));
  };
  const live = new Registry();
  const lookups: { name: string; latest: number }[] = [];
  const writeAndApply = (key: string, value: Uint8Array | string | undefined) => {
    write(key, value);
    apply(live, lookups, key, bucket.get(key)!.at(-1)!);
  };
  const servedDomains = () => new Map([...live.served()].flatMap(([name, { record }]) => record.domains.map((domain) => [domain, name] as const)));
  /** The replica's own claim writes, made right after a resolve, never move a served domain. */
  const writeClaims = () => {
    const before = servedDomains();
    for (const { domain, owner, expectedRevision } of live.claimsToWrite()) {
      const latest = bucket.get(`domains.${domain}`)?.at(-1);
      if ((latest?.value === undefined ? 0 : latest.revision) === expectedRevision) writeAndApply(`domains.${domain}`, owner);
    }
    resolve(live, lookups);
    const after = servedDomains();
    for (const [domain, name] of before) assert.equal(after.get(domain), name, `seed ${seed}: the replica's claim writes moved ${domain}`);
  };
  for (let step = 0; step < 40; step++) {
    const roll = random();
    if (roll < 0.35) {
      const listed = domains.filter(() => random() < 0.4);
      writeAndApply(`services.${pick(names)}`, json(random() < 0.1 ? [] : listed.length > 0 ? listed : [pick(domains)]));
    } else if (roll < 0.42) {
      const name = pick(names);
      if (bucket.get(`services.${name}`)?.at(-1)?.value !== undefined) writeAndApply(`services.${name}`, undefined);
    } else if (roll < 0.47) writeAndApply(`domains.${pick(domains)}`, random() < 0.2 ? undefined : pick([...names, "ghost"]));
    else if (roll < 0.7) {
      resolve(live, lookups);
      if (random() < 0.7) writeClaims();
    } else if (lookups.length > 0) settle(live, lookups, Math.floor(random() * lookups.length));
  }
  for (let round = 0; round < 10; round++) {
    while (lookups.length > 0) settle(live, lookups, 0);
    resolve(live, lookups);
    writeClaims();
  }
  const fresh = new Registry();
  const freshLookups: { name: string; latest: number }[] = [];
  const latest = [...bucket].map(([key, history]) => [key, history.at(-1)!] as const).sort((x, y) => x[1].revision - y[1].revision);
  for (const [key, entry] of latest) apply(fresh, freshLookups, key, entry);
  for (let round = 0; round < 10; round++) {
    resolve(fresh, freshLookups);
    while (freshLookups.length > 0) settle(fresh, freshLookups, 0);
  }
  const outcome = (registry: Registry) => JSON.stringify([...registry.served()].map(([name, e]) => [name, e.revision]).sort());
  assert.equal(outcome(live), outcome(fresh), `seed ${seed}: a live replica and one loading the bucket disagree`);
  const statuses = (registry: Registry) => JSON.stringify(names.map((name) => registry.status(name)));
  assert.equal(statuses(live), statuses(fresh), `seed ${seed}: statuses differ`);
}
