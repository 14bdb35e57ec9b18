// An upstream that dies, with a real Envoy: a service with several endpoints keeps answering
// from the ones that live. A request that cannot connect is retried on another endpoint, and
// Envoy stops picking the dead one (outlier detection).
import assert from "node:assert/strict";
import { Agent } from "node:http";
import { after, before, describe, it } from "node:test";
import { freePort, getThroughEnvoy, record, startStack, upstreamGreeting, type Stack } from "@envoyage/test-support";

describe("an upstream that is down", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ protocol: "delta" });
  });
  after(async () => {
    await stack?.stop();
  });

  it("fails no request of a service whose other endpoints live", async () => {
    const dead = { address: "127.0.0.1", port: await freePort() }; // nothing listens there
    const pool = record(stack.upstreams.A, ["pool.example.com"]);
    pool.endpoints.push(dead, { address: stack.upstreams.B.address, port: stack.upstreams.B.port });
    assert.equal((await stack.call("PUT", "/v1/services/pool", pool)).status, 201);
    await stack.until("pool.example.com", upstreamGreeting("A"));

    const answers = new Map<string, number>();
    const count = ({ status, body }: { status: number; body: string }) => {
      const key = status === 200 ? body.trim() : `${status} ${body.trim()}`;
      answers.set(key, (answers.get(key) ?? 0) + 1);
    };
    // First 60 at once, while the dead endpoint is still picked: retries in flight together.
    const parallel = new Agent({ keepAlive: true, maxSockets: Infinity });
    for (const response of await Promise.all(Array.from({ length: 60 }, () => getThroughEnvoy(parallel, stack.listenerPort, "pool.example.com")))) count(response);
    parallel.destroy();
    for (let i = 0; i < 300; i++) count(await stack.get("pool.example.com"));
    assert.deepEqual([...answers.keys()].sort(), [upstreamGreeting("A").trim(), upstreamGreeting("B").trim()], JSON.stringify([...answers]));
    // Retried a few times, until the dead endpoint was left out after 5 failures in a row.
    const stats = await stack.envoy.stats();
    assert.equal(stats.get("cluster.pool.outlier_detection.ejections_active"), 1);
    const retries = stats.get("cluster.pool.upstream_rq_retry") ?? 0;
    assert.ok(retries >= 5 && retries < 60, `${retries} retries`);
    assert.equal(stats.get("cluster.pool.upstream_rq_retry_overflow") ?? 0, 0);
  });
});
