// ServiceStore against a real nats-server, with reads of chosen keys made to fail (what NATS
// failing half way through a write must not do) or to return claims made long ago (orphans).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { claimKey } from "@envoyage/registry";
import { sleep, startNats, type NatsServer } from "@envoyage/test-support";
import { ServiceStore } from "../src/service-store.js";
import type { RegistryView } from "../src/registry-view.js";

let nats: NatsServer;
let nc: NatsConnection;
let kv: KV;
/** Keys whose reads fail, as a NATS request that times out does. */
const failingReads = new Set<string>();
/** Keys read as if written two minutes ago. */
const agedReads = new Set<string>();
/** Keys whose reads never answer (until the test ends), as a NATS slow to time out. */
const hangingReads = new Set<string>();

/** The real bucket, except for reads of `failingReads` and `agedReads`. */
function faultyBucket(bucket: KV): KV {
  return new Proxy(bucket, {
    get(target, property, receiver) {
      if (property === "get") {
        return async (key: string) => {
          if (failingReads.has(key)) throw new Error(`injected: reading ${key} timed out`);
          if (hangingReads.has(key)) return new Promise(() => {});
          const entry = await target.get(key);
          return entry && agedReads.has(key) ? Object.create(entry, { created: { value: new Date(Date.now() - 120_000) } }) : entry;
        };
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A view that has not loaded: every write takes the checked path, reading the bucket first. */
const unloadedView = { loaded: false, noteWrite() {}, servicesListing: () => [] } as unknown as RegistryView;

const holderOf = async (domain: string) => (await kv.get(claimKey(domain)))?.string();

before(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  kv = await new Kvm(nc).create("envoyage", { history: 10 });
});

after(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("giving back claims after a write", () => {
  const endpoints = [{ address: "127.0.0.1", port: 5678 }];

  it("a PUT that was written succeeds, and keeps its claims, when giving back a dropped domain fails", async () => {
    const store = new ServiceStore(faultyBucket(kv), unloadedView);
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
    const store = new ServiceStore(faultyBucket(kv), unloadedView);
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
    const store = new ServiceStore(faultyBucket(kv), unloadedView);
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
    await assert.rejects(store.put("taker", record(domain), undefined), { status: 409, code: "domain_conflict" });
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
    const store = new ServiceStore(faultyBucket(kv), unloadedView);
    await store.put("h1", record("h1.example.com"), undefined);
    await assertOrphanTakenOverOnceOld(store, "h1", "orphan1.example.com");
  });

  it("is taken over once old, when its holder was deleted before the claim", async () => {
    const store = new ServiceStore(faultyBucket(kv), unloadedView);
    await store.put("h2", record("h2.example.com"), undefined);
    await store.delete("h2", undefined);
    await assertOrphanTakenOverOnceOld(store, "h2", "orphan2.example.com");
  });
});

describe("a claim its own service holds without listing the domain", () => {
  it("gives no right over another service whose record lists the domain (409), however old", async () => {
    // ghost12's claim was written by hand; cli12 (written with the CLI) lists the domain and is
    // what the replicas serve: ghost12 writing a record would take the domain from it.
    const listing = { ...unloadedView, servicesListing: (domain: string) => (domain === "own12.example.com" ? ["cli12"] : []) } as unknown as RegistryView;
    const store = new ServiceStore(faultyBucket(kv), listing);
    await kv.put(claimKey("own12.example.com"), "ghost12");
    await kv.put("services.cli12", JSON.stringify({ domains: ["own12.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
    await assert.rejects(
      store.put("ghost12", { domains: ["own12.example.com"], endpoints: [{ address: "127.0.0.1", port: 5679 }] }, undefined),
      { status: 409, code: "domain_conflict", message: 'domain "own12.example.com" is listed by service "cli12"', details: { domain: "own12.example.com", heldBy: "cli12" } },
    );
    assert.equal(await store.get("ghost12"), undefined, "nothing written");
  });
});

describe("a claim whose holder's latest record is invalid", () => {
  const endpoints = [{ address: "127.0.0.1", port: 5678 }];

  it("is judged by the holder's last good revision, as the replicas serve it", async () => {
    const store = new ServiceStore(faultyBucket(kv), unloadedView);
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
});

describe("claims written by hand", () => {
  it("are taken over when their value names no possible service", async () => {
    const store = new ServiceStore(faultyBucket(kv), unloadedView);
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
    const listing = { ...unloadedView, servicesListing: (domain: string) => (domain === "served11.example.com" ? ["cli11"] : []) } as unknown as RegistryView;
    const store = new ServiceStore(faultyBucket(kv), listing);
    await kv.put("services.cli11", JSON.stringify({ domains: ["served11.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
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
