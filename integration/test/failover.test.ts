// Replica failures under real traffic: SIGKILL one replica, restart it, kill the other, several
// rounds; a replica that hangs; then SIGTERM. Zero failed requests, and Envoy neither re-warms clusters nor churns
// listeners when it reconnects, which holds only because replicas in the same state send the
// same versions.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { record, replicaStatus, startLoad, startStackServingWeb, upstreamGreeting, waitFor, type Stack } from "@envoyage/test-support";

const WEB = "web.example.com";
const ROUNDS = 3;
/** Keepalive (a ping every 2 s, 15 % jitter, 5 s to answer) plus reconnecting and a loaded machine's slack. */
const HUNG_REPLICA_BOUND_MS = 10_000;
/** Envoy counters that move only when clusters or listeners are (re)configured. */
const CHURN = [
  "cluster_manager.cds.update_success",
  "cluster_manager.cluster_added",
  "cluster_manager.cluster_modified",
  "cluster_manager.cluster_removed",
  "listener_manager.lds.update_success",
  "listener_manager.listener_added",
  "listener_manager.listener_modified",
  "listener_manager.listener_removed",
];

describe("replica failover under load", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStackServingWeb();
  });
  after(async () => {
    await stack?.stop();
  });

  const churn = async () => {
    const stats = await stack.envoy.stats();
    return Object.fromEntries(CHURN.map((name) => [name, stats.get(name) ?? 0]));
  };

  /** Waits until Envoy's stream is open on a replica other than `gone`; returns it. */
  const reconnected = (gone: number) =>
    waitFor("Envoy to reconnect to the other replica", async () => {
      const index = await stack.connectedReplica();
      return index !== undefined && index !== gone ? index : undefined;
    }, { timeoutMs: 15_000, intervalMs: 50 });

  it(`loses no request while replicas are SIGKILLed and restarted, ${ROUNDS} rounds`, async (t) => {
    const before = await churn();
    const load = startLoad(t, { port: stack.listenerPort, host: WEB });
    let upstream: "A" | "B" = "A";
    let kills = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const victim = (await stack.connectedReplica()) ?? 0;
      await stack.replicas[victim]!.kill();
      kills++;
      await reconnected(victim);
      assert.equal(await stack.envoy.stat("cluster_manager.warming_clusters"), 0, "no cluster re-warms on reconnect");
      // The control plane still works through the survivor.
      upstream = upstream === "A" ? "B" : "A";
      await stack.call("PUT", "/v1/services/web", record(stack.upstreams[upstream]));
      await stack.until(WEB, upstreamGreeting(upstream));
      await stack.restartReplica(victim);
    }
    const result = await load.stop();
    t.diagnostic(`${kills} replicas SIGKILLed under load: ${result.requests} requests, ${result.non2xx} non-2xx, ${result.errors} errors`);
    assert.ok(result.ok > 500, `only ${result.ok} requests got through`);
    assert.deepEqual(result.failedByStatus, {});
    assert.equal(result.non2xx + result.errors + result.timeouts, 0);
    assert.deepEqual(await churn(), before, "no cluster or listener was re-added or modified");
  });

  it("moves Envoy off a replica that hangs (SIGSTOP) within its keepalive, losing no request", async (t) => {
    const load = startLoad(t, { port: stack.listenerPort, host: WEB });
    const frozen = (await stack.connectedReplica()) ?? 0;
    const replica = stack.replicas[frozen]!;
    const current = (await stack.get(WEB)).body === upstreamGreeting("A") ? "A" : "B";
    const next = current === "A" ? "B" : "A";
    replica.process.pause();
    try {
      const frozenAt = performance.now();
      await stack.call("PUT", "/v1/services/web", record(stack.upstreams[next]));
      // envoy/bootstrap.yaml: a ping every 2 s, 5 s to answer it, then the other replica.
      await stack.until(WEB, upstreamGreeting(next), 15_000);
      const movedMs = performance.now() - frozenAt;
      t.diagnostic(`the change reached Envoy ${movedMs.toFixed(0)} ms after its replica froze`);
      assert.ok(movedMs < HUNG_REPLICA_BOUND_MS, `Envoy stayed ${movedMs.toFixed(0)} ms on a frozen replica (keepalive: ≤ ~7.3 s)`);
    } finally {
      replica.process.resume();
    }
    const result = await load.stop();
    assert.equal(result.non2xx + result.errors + result.timeouts, 0, JSON.stringify(result.failedByStatus));
    const revision = async (of: { statusUrl: string }) => (await replicaStatus<{ revision: number }>(of)).revision;
    await waitFor("the thawed replica to catch up", async () => ((await revision(replica)) === (await revision(stack.replicas[1 - frozen]!)) ? true : undefined));
  });

  it("loses no request while a replica shuts down on SIGTERM and hands Envoy over", async (t) => {
    const before = await churn();
    const load = startLoad(t, { port: stack.listenerPort, host: WEB });
    const serving = (await stack.connectedReplica()) ?? 0;
    const exit = await stack.replicas[serving]!.process.stop("SIGTERM");
    assert.equal(exit.code, 0, "the replica exits cleanly");
    await reconnected(serving);
    await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
    await stack.until(WEB, upstreamGreeting("A"));
    const result = await load.stop();
    t.diagnostic(`SIGTERM under load: ${result.requests} requests, ${result.non2xx} non-2xx, ${result.errors} errors`);
    assert.equal(result.non2xx + result.errors + result.timeouts, 0);
    assert.match(stack.replicas[serving]!.process.output(), /"streams":1,"msg":"shutting down: handing Envoys over to other replicas"/);
    assert.deepEqual(await churn(), before);
    await stack.restartReplica(serving);
  });
});
