// ServiceStore against a real nats-server, with reads of chosen keys made to fail (what NATS
// failing half way through a write must not do) or to return claims made long ago (orphans).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { claimKey, createLogger, NatsLink, openBucket } from "@envoyage/registry";
import { sleep, startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import type { ApiError } from "../src/errors.js";
import { ServiceStore } from "../src/service-store.js";
import { RegistryView } from "../src/registry-view.js";

let nats: NatsServer;
let nc: NatsConnection;
let kv: KV;
/** Keys whose reads fail, as a NATS request that times out does. */
const failingReads = new Set<string>();
/** Keys read as if written two minutes ago. */
const agedReads = new Set<string>();
/** Keys whose reads never answer (until the test ends), as a NATS slow to time out. */
const hangingReads = new Set<string>();
/** Writes made right after the next read of a key: another client's, between a read and a compare-and-set. */
const writesAfterRead = new Map<string, () => Promise<unknown>>();

/** Status reads (stream info) fail while set, as during a NATS cluster's leader election; and are counted. */
const statusReads = { failing: false, count: 0 };

/** The real bucket, except for reads of `failingReads`, `agedReads`, `hangingReads`, `writesAfterRead`, and status reads. */
function faultyBucket(bucket: KV): KV {
  return new Proxy(bucket, {
    get(target, property, receiver) {
      if (property === "status") {
        return async () => {
          statusReads.count++;
          if (statusReads.failing) throw new Error("injected: stream info timed out");
          return target.status();
        };
      }
      if (property === "get") {
        return async (key: string) => {
          if (failingReads.has(key)) throw new Error(`injected: reading ${key} timed out`);
          if (hangingReads.has(key)) return new Promise(() => {});
          const entry = await target.get(key);
          const write = writesAfterRead.get(key);
          writesAfterRead.delete(key);
          await write?.();
          return entry && agedReads.has(key) ? Object.create(entry, { created: { value: new Date(Date.now() - 120_000) } }) : entry;
        };
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

let view: RegistryView;
let link: NatsLink;
/**
 * The API's view of the bucket, but as one that has not loaded for ServiceStore's fast path:
 * every write takes the checked path, reading the bucket first.
 */
let checkedPath: RegistryView;

/** Writes as the CLI does, and waits until the view has applied it. */
async function cliPut(key: string, value: string): Promise<void> {
  const revision = await kv.put(key, value);
  await waitFor(`the view to apply ${key}`, () => (view.revision >= revision ? true : undefined));
}

const holderOf = async (domain: string) => (await kv.get(claimKey(domain)))?.string();

before(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  kv = await new Kvm(nc).create("envoyage", { history: 10 });
  const logger = createLogger("api", "silent");
  link = new NatsLink({ servers: [nats.url], name: "service-store-test", logger });
  view = new RegistryView({ link, bucket: "envoyage", timeoutMs: 2000, logger, open: async () => openBucket(await link.connect(), { bucket: "envoyage", create: false, timeoutMs: 2000 }) });
  void view.start();
  await waitFor("the view to load", () => (view.loaded ? true : undefined));
  checkedPath = new Proxy(view, {
    get(target, property) {
      if (property === "loaded") return false;
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
});

after(async () => {
  await view?.stop();
  await link?.close();
  await nc?.close();
  await nats?.stop();
});

describe("giving back claims after a write", () => {
  const endpoints = [{ address: "127.0.0.1", port: 5678 }];

  it("a PUT that was written succeeds, and keeps its claims, when giving back a dropped domain fails", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("a", { domains: ["keep.example.com", "drop.example.com"], endpoints }, undefined);
    failingReads.add(claimKey("drop.example.com"));
    try {
      const result = await store.put("a", { domains: ["keep.example.com"], endpoints }, undefined);
      assert.deepEqual(result.service.record.domains, ["keep.example.com"]);
    } finally {
      failingReads.clear();
    }
    assert.equal(await holderOf("keep.example.com"), "a", "the written record keeps its claim");
  });

  it("a PUT that was written answers without waiting long for a dropped domain's claim to be given back", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("slow", { domains: ["slow-keep.example.com", "slow-drop.example.com"], endpoints }, undefined);
    hangingReads.add(claimKey("slow-drop.example.com"));
    try {
      const answered = store.put("slow", { domains: ["slow-keep.example.com"], endpoints }, undefined).then(() => "answered");
      const outcome = await Promise.race([answered, sleep(5_000).then(() => "still waiting after 5 s")]);
      assert.equal(outcome, "answered");
    } finally {
      hangingReads.clear();
    }
  });

  it("a DELETE that was done succeeds when giving back its domains fails", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("b", { domains: ["b.example.com"], endpoints }, undefined);
    failingReads.add(claimKey("b.example.com"));
    try {
      assert.equal(await store.delete("b", undefined), true);
    } finally {
      failingReads.clear();
    }
    assert.equal(await store.get("b"), undefined);
  });
});

describe("claims a failed PUT left behind", () => {
  const endpoints = [{ address: "127.0.0.1", port: 5678 }];
  const record = (domain: string) => ({ domains: [domain], endpoints });

  /**
   * A claim newer than its holder's record, which does not list the domain: what a PUT leaves
   * that claimed, then failed to write its record and to give the claim back. Young, it may be a
   * write in progress; old, it is taken over.
   */
  async function assertOrphanTakenOverOnceOld(store: ServiceStore, holder: string, domain: string): Promise<void> {
    await kv.create(claimKey(domain), holder);
    const claimed = Date.now();
    const refusal = await store.put("taker", record(domain), undefined).then(
      () => assert.fail("a young claim is taken"),
      (error: ApiError) => error,
    );
    assert.equal(refusal.status, 409);
    assert.equal(refusal.code, "domain_conflict");
    assert.match(refusal.message, new RegExp(`claimed by service "${holder}", whose record does not list it \\(yet\\).*lapses at`));
    const lapsesAt = Date.parse(refusal.details.claimLapsesAt as string);
    assert.ok(Math.abs(lapsesAt - claimed - 60_000) < 5_000, `the claim lapses 60 s after it was written, not at ${refusal.details.claimLapsesAt}`);
    agedReads.add(claimKey(domain));
    try {
      await store.put("taker", record(domain), undefined);
    } finally {
      agedReads.clear();
    }
    assert.equal(await holderOf(domain), "taker");
    await store.delete("taker", undefined);
  }

  it("is taken over once old, when its holder has an older record without the domain", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("h1", record("h1.example.com"), undefined);
    await assertOrphanTakenOverOnceOld(store, "h1", "orphan1.example.com");
  });

  it("is taken over once old, when its holder was deleted before the claim", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("h2", record("h2.example.com"), undefined);
    await store.delete("h2", undefined);
    await assertOrphanTakenOverOnceOld(store, "h2", "orphan2.example.com");
  });
});

describe("a claim its own service holds without listing the domain", () => {
  it("gives no right over another service whose record lists the domain (409), however old", async () => {
    // ghost12's claim was written by hand; cli12 (written with the CLI) lists the domain and is
    // what the replicas serve: ghost12 writing a record would take the domain from it.
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await kv.put(claimKey("own12.example.com"), "ghost12");
    await cliPut("services.cli12", JSON.stringify({ domains: ["own12.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
    await assert.rejects(
      store.put("ghost12", { domains: ["own12.example.com"], endpoints: [{ address: "127.0.0.1", port: 5679 }] }, undefined),
      { status: 409, code: "domain_conflict", message: 'domain "own12.example.com" is listed by service "cli12"', details: { domain: "own12.example.com", heldBy: "cli12" } },
    );
    assert.equal(await store.get("ghost12"), undefined, "nothing written");
  });
});

describe("deleting a service whose latest value is invalid", () => {
  const endpoints = [{ address: "127.0.0.1", port: 5678 }];

  it("fails before deleting when its last good revision cannot be read, and gives that revision's claims back once it can", async () => {
    const historyFails = new Proxy(view, {
      get(target, property) {
        if (property === "history") return async () => Promise.reject(new Error("injected: reading the history timed out"));
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    await new ServiceStore(faultyBucket(kv), view).put("inv20", { domains: ["inv20.example.com"], endpoints }, undefined);
    await cliPut("services.inv20", "{not json");
    await assert.rejects(new ServiceStore(faultyBucket(kv), historyFails).delete("inv20", undefined), /injected/);
    assert.equal((await kv.get("services.inv20"))?.string(), "{not json", "deleted, though the client was told it failed");
    assert.equal(await new ServiceStore(faultyBucket(kv), view).delete("inv20", undefined), true);
    assert.equal((await kv.get(claimKey("inv20.example.com")))?.operation, "DEL", "the claim is given back");
  });
});

describe("a claim whose holder's latest record is invalid", () => {
  const endpoints = [{ address: "127.0.0.1", port: 5678 }];

  it("is judged by the holder's last good revision, as the replicas serve it", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("inv13", { domains: ["kept13.example.com", "dropped13.example.com"], endpoints }, undefined);
    await kv.put("services.inv13", JSON.stringify({ domains: ["kept13.example.com"], endpoints })); // dropped13's claim left behind
    await kv.put("services.inv13", "{not json");
    await assert.rejects(store.put("taker13", { domains: ["kept13.example.com"], endpoints }, undefined), {
      status: 409,
      message: 'domain "kept13.example.com" is held by service "inv13"',
    });
    await store.put("taker13", { domains: ["dropped13.example.com"], endpoints }, undefined);
    assert.equal(await holderOf("dropped13.example.com"), "taker13");
  });

  it("is read with direct gets: refused PUTs leave no consumer behind", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    const consumers = async () => (await (await jetstreamManager(nc)).streams.info("KV_envoyage")).state.consumer_count;
    const before = await consumers();
    for (let i = 0; i < 20; i++) {
      await assert.rejects(store.put(`taker16-${i}`, { domains: ["kept13.example.com"], endpoints }, undefined), { status: 409 });
    }
    assert.equal(await consumers(), before);
  });

  it("lets the holder fix its record while another service's record lists the domain", async () => {
    // fix15 serves its last good revision, which lists the domain and holds its claim; cli15,
    // written with the CLI, lists the domain too and is the conflicting one.
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("fix15", { domains: ["fix15.example.com"], endpoints }, undefined);
    await cliPut("services.cli15", JSON.stringify({ domains: ["fix15.example.com"], endpoints }));
    await cliPut("services.fix15", "{typo");
    const fixed = await store.put("fix15", { domains: ["fix15.example.com"], endpoints: [{ address: "127.0.0.1", port: 5680 }] }, undefined);
    assert.equal(fixed.created, false);
    assert.equal(await holderOf("fix15.example.com"), "fix15");
  });
});

describe("a domain without a claim that another service's record lists", () => {
  // cli14 was written with the CLI a moment ago (or its claim deleted by hand): replicas serve it
  // and are about to claim the domain for it.
  it("is not taken, by the checked path or the fast one (409)", async () => {
    await cliPut("services.cli14", JSON.stringify({ domains: ["unclaimed14.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
    for (const store of [new ServiceStore(faultyBucket(kv), checkedPath), new ServiceStore(kv, view)]) {
      await assert.rejects(store.put("taker14", { domains: ["unclaimed14.example.com"], endpoints: [{ address: "127.0.0.1", port: 5679 }] }, undefined), {
        status: 409,
        message: 'domain "unclaimed14.example.com" is listed by service "cli14"',
      });
    }
    assert.equal(await holderOf("unclaimed14.example.com"), undefined, "no claim was written");
  });
});

describe("the API's view", () => {
  it("does not bring back a service deleted after a write it notes", async () => {
    const first = await kv.put("services.gone17", JSON.stringify({ domains: ["gone17.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
    const deleted = await kv.delete("services.gone17").then(async () => (await kv.status()).streamInfo.state.last_seq);
    await waitFor("the view to apply the delete", () => (view.revision >= deleted ? true : undefined));
    view.noteWrite("gone17", first, { domains: ["gone17.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }, view.generation);
    assert.equal(view.service("gone17"), undefined);
    assert.deepEqual(view.servicesListing("gone17.example.com"), []);
  });

  it("does not note a write begun before the bucket was created again: it may have gone to the deleted bucket", async () => {
    const logger = createLogger("api", "silent");
    const old = await new Kvm(nc).create("recreated19", { history: 10 });
    const own = new RegistryView({ link, bucket: "recreated19", timeoutMs: 2000, logger, open: async () => new Kvm(await link.connect()).open("recreated19") });
    try {
      void own.start();
      await waitFor("the view to load", () => (own.loaded ? true : undefined));
      for (let i = 0; i < 20; i++) await old.put(`services.filler${i}`, JSON.stringify({ domains: [`f${i}.example.com`], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
      const begun = own.generation;
      const revision = await old.put("services.phantom19", JSON.stringify({ domains: ["phantom19.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
      await jetstreamManager(nc).then((jsm) => jsm.streams.delete("KV_recreated19"));
      await new Kvm(nc).create("recreated19", { history: 10 });
      await waitFor("the view to load the new bucket", () => (own.generation > begun && own.loaded ? true : undefined));
      own.noteWrite("phantom19", revision, { domains: ["phantom19.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }, begun);
      assert.equal(own.service("phantom19"), undefined, "a service of the deleted bucket");
      assert.deepEqual(own.services(), []);
    } finally {
      await own.stop();
    }
  });

  it("forgets a service this API deleted at once, and the watch delivering the deleted revision late does not bring it back", async () => {
    const value = { domains: ["late18.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] };
    const revision = await kv.put("services.late18", JSON.stringify(value));
    // A view whose watch has delivered nothing yet: the API's own, a moment behind.
    const lagging = new RegistryView({ link, bucket: "envoyage", timeoutMs: 2000, logger: createLogger("api", "silent"), open: async () => kv });
    try {
      lagging.noteWrite("late18", revision, value, lagging.generation);
      lagging.noteDelete("late18", revision, lagging.generation);
      assert.equal(lagging.service("late18"), undefined);
      void lagging.start();
      await waitFor("the lagging view to load", () => (lagging.loaded ? true : undefined));
      assert.equal(lagging.service("late18"), undefined, "brought back by the watch");
      assert.deepEqual(lagging.servicesListing("late18.example.com"), []);
    } finally {
      await lagging.stop();
      await kv.delete("services.late18");
    }
  });
});

describe("the bucket's revision", () => {
  it("comes from the view while the stream does not answer, which is not asked again for a while", async () => {
    const store = new ServiceStore(faultyBucket(kv), view);
    await cliPut("services.rev", JSON.stringify({ domains: ["rev.example.com"], endpoints: [{ address: "127.0.0.1", port: 80 }] }));
    assert.equal(await store.revision(), view.revision);
    statusReads.failing = true;
    statusReads.count = 0;
    try {
      const together = await Promise.all([store.revision(), store.revision()]);
      assert.deepEqual(together, [view.revision, view.revision]);
      assert.equal(await store.revision(), view.revision);
      assert.equal(statusReads.count, 1, "reads at the same time share one, and one within the quiet time does not wait on the stream again");
      await sleep(2_100);
      await store.revision();
      assert.equal(statusReads.count, 2, "asked again after the quiet time");
    } finally {
      statusReads.failing = false;
    }
    assert.equal(await store.revision(), (await kv.status()).streamInfo.state.last_seq);
  });
});

describe("a DELETE", () => {
  const record = (port: number) => ({ domains: ["race19.example.com"], endpoints: [{ address: "127.0.0.1", port }] });

  it("without If-Match deletes the record written between its read and its delete", async () => {
    const store = new ServiceStore(faultyBucket(kv), view);
    await store.put("race19", record(5678), undefined);
    writesAfterRead.set("services.race19", () => kv.put("services.race19", JSON.stringify(record(5679))));
    assert.equal(await store.delete("race19", undefined), true);
    assert.equal(writesAfterRead.size, 0, "the concurrent write was made");
    assert.equal(await store.get("race19"), undefined);
    assert.ok(!(await holderOf("race19.example.com")), "the domain's claim is given back");
  });

  it("with If-Match does not delete a record written since (412)", async () => {
    const store = new ServiceStore(faultyBucket(kv), view);
    const { service } = await store.put("race20", record(5678), undefined);
    writesAfterRead.set("services.race20", () => kv.put("services.race20", JSON.stringify(record(5679))));
    await assert.rejects(store.delete("race20", [service.revision]), { status: 412, code: "revision_mismatch" });
    assert.equal((await store.get("race20"))?.record?.endpoints[0]?.port, 5679);
  });

  it("with If-Match: * of a service that does not exist answers 412, as a PUT does", async () => {
    const store = new ServiceStore(kv, view);
    await assert.rejects(store.delete("never21", "*"), { status: 412, code: "revision_mismatch" });
    assert.equal(await store.delete("never21", undefined), false);
  });
});

describe("a PUT with If-Match", () => {
  const record = (port: number) => ({ domains: ["race23.example.com"], endpoints: [{ address: "127.0.0.1", port }] });

  it("* replaces a record written between its read and its write: it exists, which is all * asks", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await store.put("race23", record(5678), undefined);
    writesAfterRead.set("services.race23", () => kv.put("services.race23", JSON.stringify(record(5679))));
    const { service } = await store.put("race23", record(5680), "*");
    assert.equal(writesAfterRead.size, 0, "the concurrent write was made");
    assert.equal((await store.get("race23"))?.revision, service.revision);
    assert.equal((await store.get("race23"))?.record?.endpoints[0]?.port, 5680);
  });

  it("of the revision it read answers 412 with the revision written since, not the one it sent", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    const { service } = await store.put("race23", record(5678), undefined);
    writesAfterRead.set("services.race23", () => kv.put("services.race23", JSON.stringify(record(5679))));
    await assert.rejects(store.put("race23", record(5680), [service.revision]), (error: ApiError) => {
      assert.equal(error.status, 412);
      assert.ok((error.details as { currentRevision: number }).currentRevision > service.revision, JSON.stringify(error.details));
      return true;
    });
    assert.equal((await store.get("race23"))?.record?.endpoints[0]?.port, 5679);
  });
});

describe("a write abandoned while it waits for another write of the same service", () => {
  it("never happens: its client was answered 503", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    const record = (port: number) => ({ domains: ["queued24.example.com"], endpoints: [{ address: "127.0.0.1", port }] });
    writesAfterRead.set("services.queued24", () => sleep(300)); // the first write reads slowly
    const first = store.put("queued24", record(5678), undefined);
    const abandoned = new AbortController();
    const second = store.put("queued24", record(5679), undefined, abandoned.signal);
    abandoned.abort(new Error("answered 503"));
    await first;
    await assert.rejects(second, /answered 503/);
    await sleep(100);
    assert.equal((await store.get("queued24"))?.record?.endpoints[0]?.port, 5678);
  });
});

describe("claims written by hand", () => {
  it("are taken over when their value names no possible service", async () => {
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    for (const [i, value] of ["", "   ", "x>", "garbage name!"].entries()) {
      const domain = `hand${i}.example.com`;
      await kv.put(claimKey(domain), value);
      await store.put(`hand${i}`, { domains: [domain], endpoints: [{ address: "127.0.0.1", port: 5678 }] }, undefined);
      assert.equal(await holderOf(domain), `hand${i}`, JSON.stringify(value));
    }
  });
});

describe("a stale claim beside a service that serves its domain", () => {
  it("is not taken over: the serving service keeps the domain (409)", async () => {
    // cli11 serves served11.example.com (written with the CLI), and the claim names a service
    // that does not exist: stale by its holder, but the domain is still cli11's.
    const store = new ServiceStore(faultyBucket(kv), checkedPath);
    await cliPut("services.cli11", JSON.stringify({ domains: ["served11.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
    await kv.put(claimKey("served11.example.com"), "nonexistent");
    agedReads.add(claimKey("served11.example.com"));
    try {
      await assert.rejects(
        store.put("other11", { domains: ["served11.example.com"], endpoints: [{ address: "127.0.0.1", port: 5679 }] }, undefined),
        { status: 409, code: "domain_conflict", details: { domain: "served11.example.com", heldBy: "cli11" } },
      );
    } finally {
      agedReads.clear();
    }
    assert.equal(await holderOf("served11.example.com"), "nonexistent", "the claim was left alone");
  });
});

describe("listing in pages", () => {
  it("gives the same pages from the view and, before it has loaded, from the bucket's keys", async () => {
    const endpoints = [{ address: "127.0.0.1", port: 5678 }];
    for (const name of ["page-c", "page-a", "page-b", "page-d"]) await cliPut(`services.${name}`, JSON.stringify({ domains: [`${name}.example.com`], endpoints }));
    for (const [path, store] of [["view", new ServiceStore(kv, view)], ["bucket", new ServiceStore(kv, checkedPath)]] as const) {
      const names = (page: { services: { name: string }[] }) => page.services.map((s) => s.name).filter((n) => n.startsWith("page-"));
      const all = await store.list();
      assert.equal(all.more, false, path);
      const first = await store.list({ after: "page", limit: 2 });
      assert.deepEqual([names(first), first.more], [["page-a", "page-b"], true], path);
      const second = await store.list({ after: "page-b", limit: 2 });
      assert.deepEqual(names(second), ["page-c", "page-d"], path);
      const last = await store.list({ after: "page-c", limit: 100 });
      assert.deepEqual(names(last), ["page-d"], path);
      assert.equal(last.services.length, all.services.filter((s) => s.name > "page-c").length, path);
      assert.equal(last.more, false, path);
    }
  });

  it("lists services that came and leaves out those that went since the last listing", async () => {
    const endpoints = [{ address: "127.0.0.1", port: 5678 }];
    for (const name of ["roll-a", "roll-c"]) await cliPut(`services.${name}`, JSON.stringify({ domains: [`${name}.example.com`], endpoints }));
    const store = new ServiceStore(kv, view);
    const names = async () => (await store.list({ after: "roll", limit: 10 })).services.map((s) => s.name).filter((n) => n.startsWith("roll-"));
    assert.deepEqual(await names(), ["roll-a", "roll-c"]);
    await cliPut("services.roll-b", JSON.stringify({ domains: ["roll-b.example.com"], endpoints }));
    const deleted = await kv.delete("services.roll-a").then(async () => (await kv.status()).streamInfo.state.last_seq);
    await waitFor("the view to apply the delete", () => (view.revision >= deleted ? true : undefined));
    assert.deepEqual(await names(), ["roll-b", "roll-c"]);
  });
});
