// The seed's demo, end to end through a real Envoy: add web.example.com → A, switch it to B,
// remove it; through the HTTP API and through the nats CLI; with bad input and a dead replica.
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import { record, startStack, upstreamGreeting, waitFor, type Stack } from "@envoyage/test-support";

const A = upstreamGreeting("A");
const B = upstreamGreeting("B");
const WEB = "web.example.com";

/** The whole suite, against an Envoy that speaks `protocol`. */
function seedSuite(protocol: "sotw" | "delta"): void {
  let stack: Stack;
  let envoyStartedAt: number;

  before(async () => {
    stack = await startStack({ protocol });
    envoyStartedAt = Date.now();
  });

  after(async () => {
    await stack?.stop();
  });

  /** The same Envoy process all along, never restarted and never rejecting an update. */
  async function assertSameEnvoy(): Promise<void> {
    assert.ok(stack.envoy.process.running, "Envoy is still running");
    const upSince = (Date.now() - envoyStartedAt) / 1000;
    assert.ok((await stack.envoy.uptime()) >= Math.floor(upSince) - 1, "Envoy has been up since the stack started");
    const stats = await stack.envoy.stats();
    assert.equal(stats.get("server.hot_restart_epoch"), 0);
    for (const name of ["cluster_manager.cds.update_rejected", "listener_manager.lds.update_rejected"]) {
      assert.equal(stats.get(name), 0, `${name} is not 0`);
    }
    const logs = stack.replicas.map((r) => r.process.output()).join("");
    assert.match(logs, new RegExp(`"protocol":"${protocol}"`), `Envoy's streams are not ${protocol}`);
  }

  /** Logs the time from `since` (just before the write) to the first correct response through Envoy. */
  function report(t: TestContext, what: string, since: number): void {
    t.diagnostic(`${what}: ${(performance.now() - since).toFixed(1)} ms from write to first correct response through Envoy`);
  }

  describe("through the HTTP API", () => {
    it("adds web.example.com → upstream A", async (t) => {
      const started = performance.now();
      const response = await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
      assert.equal(response.status, 201);
      await stack.until(WEB, A);
      report(t, "add (API)", started);
      assert.equal((await stack.get(WEB)).body, A);
      await assertSameEnvoy();
    });

    it("switches it to upstream B in place, and as the seed does (remove, then re-add)", async (t) => {
      let started = performance.now();
      assert.equal((await stack.call("PUT", "/v1/services/web", record(stack.upstreams.B))).status, 200);
      await stack.until(WEB, B);
      report(t, "in-place switch (API)", started);
      assert.equal((await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A))).status, 200);
      await stack.until(WEB, A);

      assert.equal((await stack.call("DELETE", "/v1/services/web")).status, 204);
      await stack.until(WEB, 404);
      started = performance.now();
      assert.equal((await stack.call("PUT", "/v1/services/web", record(stack.upstreams.B))).status, 201);
      await stack.until(WEB, B);
      report(t, "re-add to B (API)", started);
      await assertSameEnvoy();
    });

    it("removes it: Envoy answers 404", async (t) => {
      const started = performance.now();
      assert.equal((await stack.call("DELETE", "/v1/services/web")).status, 204);
      await stack.until(WEB, 404);
      report(t, "remove (API)", started);
      assert.equal((await stack.get(WEB)).status, 404);
      await assertSameEnvoy();
    });

    it("ignores the port and a trailing dot in the Host header and keeps other hosts at 404", async () => {
      await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
      await stack.until(`${WEB}:${stack.listenerPort}`, A);
      assert.equal((await stack.get(`${WEB}.`)).body, A, "a fully qualified name selects the service");
      assert.equal((await stack.get("unknown.example.com")).status, 404);
      await stack.call("DELETE", "/v1/services/web");
      await stack.until(WEB, 404);
    });
  });

  describe("through the nats CLI", () => {
    it("adds, switches and removes with nats kv put / del", async (t) => {
      // These times include starting the nats CLI process.
      let started = performance.now();
      await stack.natsCli("kv", "put", "envoyage", "services.web", JSON.stringify(record(stack.upstreams.A)));
      await stack.until(WEB, A);
      report(t, "add (nats kv put)", started);
      started = performance.now();
      await stack.natsCli("kv", "put", "envoyage", "services.web", JSON.stringify(record(stack.upstreams.B)));
      await stack.until(WEB, B);
      report(t, "switch (nats kv put)", started);
      started = performance.now();
      await stack.natsCli("kv", "del", "--force", "envoyage", "services.web");
      await stack.until(WEB, 404);
      report(t, "remove (nats kv del)", started);
      await assertSameEnvoy();
    });

    it("rejects a malformed value: other routes are unaffected and the service keeps its last good config", async () => {
      const lastGood = (await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A))).body.revision as number;
      await stack.call("PUT", "/v1/services/other", record(stack.upstreams.B, ["other.example.com"]));
      await stack.until(WEB, A);
      await stack.until("other.example.com", B);

      await stack.natsCli("kv", "put", "envoyage", "services.web", "{this is not json");
      await stack.natsCli("kv", "put", "envoyage", "services.broken", '{"domains":["broken.example.com"],"endpoints":[{"address":"127.0.0.1","port":0}]}');
      // A later valid change must still flow: it proves the bad values were processed and skipped.
      await stack.call("PUT", "/v1/services/other", record(stack.upstreams.A, ["other.example.com"]));
      await stack.until("other.example.com", A);
      assert.equal((await stack.get(WEB)).body, A, "web keeps its last good revision");
      assert.equal((await stack.get("broken.example.com")).status, 404, "the invalid record is never pushed");
      for (const replica of stack.replicas) assert.ok(replica.process.running, "no replica crashed");
      await assertSameEnvoy();

      const listed = await stack.call("GET", "/v1/services/web");
      assert.match(listed.body.problem, /not UTF-8 JSON/);
      const status = await waitFor("the replicas to report web invalid", async () => {
        const body = (await stack.call("GET", "/v1/services/web")).body;
        return body.status.state === "invalid" ? body.status : undefined;
      });
      assert.equal(status.servingRevision, lastGood, "Envoy still routes the last good revision, and the API says so");
      await stack.call("DELETE", "/v1/services/other");
      await stack.call("DELETE", "/v1/services/broken");
      await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
    });
  });

  describe("replica failure", () => {
    for (const victim of [0, 1]) {
      it(`keeps routing when replica ${victim + 1} is SIGKILLed, and takes later changes from the other`, async () => {
        await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
        await stack.until(WEB, A);
        const survivor = stack.replicas[1 - victim]!;
        await stack.replicas[victim]!.kill();

        for (let i = 0; i < 50; i++) assert.equal((await stack.get(WEB)).body, A, "Envoy keeps its config");
        await stack.call("PUT", "/v1/services/web", record(stack.upstreams.B));
        await stack.until(WEB, B, 15_000); // Envoy reconnects to the survivor with backoff
        assert.ok(survivor.process.running);
        await assertSameEnvoy();

        // Bring the replica back for the next round.
        await stack.restartReplica(victim);
      });
    }
  });
}

for (const protocol of ["sotw", "delta"] as const) {
  describe(`with Envoy on ${protocol === "sotw" ? "state-of-the-world" : "delta"} ADS`, () => seedSuite(protocol));
}
