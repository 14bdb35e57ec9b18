// Concurrency and consistency with real writers, replicas and Envoy: read-modify-write with
// If-Match loses no update; two services claiming one domain at the same moment leave exactly
// one winner, the same on every replica; after a burst of 1,000 changes from several writers
// both replicas report the same versions and Envoy holds exactly the registry.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { encodeRecord } from "@envoyage/registry";
import { record, replicaStatus, startStack, waitFor, type Stack } from "@envoyage/test-support";

interface ReplicaState {
  revision: number;
  resources: Record<string, { version: string; count: number }>;
  services: { rejected: Record<string, { state: string; conflicts?: { domain: string; heldBy: string }[] }> };
}

let stack: Stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const replicaStates = () =>
  Promise.all(stack.replicas.map((r) => replicaStatus<ReplicaState>(r)));

describe("concurrent writers", () => {
  it("read-modify-write with If-Match: the final state accounts for every 2xx", async (t) => {
    const base = 10_000;
    await stack.call("PUT", "/v1/services/counter", { domains: ["counter.example.com"], endpoints: [{ address: "127.0.0.1", port: base }] });
    const clients = 8;
    const increments = 10;
    let conflicts = 0;
    const client = async () => {
      let done = 0;
      while (done < increments) {
        const response = await fetch(`${stack.api.url}/v1/services/counter`);
        const etag = response.headers.get("etag")!;
        const current = (await response.json()) as { endpoints: { port: number }[] };
        const put = await fetch(`${stack.api.url}/v1/services/counter`, {
          method: "PUT",
          headers: { "content-type": "application/json", "if-match": etag },
          body: JSON.stringify({ domains: ["counter.example.com"], endpoints: [{ address: "127.0.0.1", port: current.endpoints[0]!.port + 1 }] }),
        });
        await put.arrayBuffer();
        if (put.status === 200) done++;
        else if (put.status === 412) conflicts++;
        else assert.fail(`unexpected ${put.status}`);
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    const final = (await stack.call("GET", "/v1/services/counter")).body;
    t.diagnostic(`${clients * increments} increments acknowledged, ${conflicts} retried after 412`);
    assert.equal(final.endpoints[0].port, base + clients * increments, "no update was lost");
    assert.ok(conflicts > 0, "the writers did collide");
  });

  it("two services claiming one domain at the same moment through the API: exactly one wins", async () => {
    for (let round = 0; round < 10; round++) {
      const domain = `race${round}.example.com`;
      const [left, right] = await Promise.all([
        stack.call("PUT", `/v1/services/left${round}`, record(stack.upstreams.A, [domain])),
        stack.call("PUT", `/v1/services/right${round}`, record(stack.upstreams.B, [domain])),
      ]);
      assert.deepEqual([left.status, right.status].sort(), [201, 409], `round ${round}: ${left.status}, ${right.status}`);
    }
  });

  it("two records claiming one domain at the same moment straight through NATS: every replica picks the same winner", async () => {
    const nc = await connect({ servers: stack.natsUrl.split(",") });
    const kv = await new Kvm(nc).open("envoyage");
    const winners: string[] = [];
    for (let round = 0; round < 10; round++) {
      const domain = `nats-race${round}.example.com`;
      await Promise.all([
        kv.put(`services.nleft${round}`, encodeRecord(record(stack.upstreams.A, [domain]))),
        kv.put(`services.nright${round}`, encodeRecord(record(stack.upstreams.B, [domain]))),
      ]);
      const loser = await waitFor(`both replicas to settle round ${round}`, async () => {
        const states = await replicaStates();
        const losers = states.map((s) => [`nleft${round}`, `nright${round}`].find((name) => s.services.rejected[name]?.state === "conflict"));
        return losers.every((l) => l !== undefined) ? losers : undefined;
      });
      assert.equal(loser[0], loser[1], `round ${round}: the replicas disagree`);
      const winner = loser[0] === `nleft${round}` ? `nright${round}` : `nleft${round}`;
      winners.push(winner);
      await waitFor("Envoy to route the domain to the winner", async () => ((await stack.envoy.config()).virtualHosts[winner]?.includes(domain) ? true : undefined));
      assert.equal((await stack.envoy.config()).virtualHosts[loser[0]!], undefined, "the loser is never pushed");
    }
    await nc.close();
  });
});

describe("consistency under churn", () => {
  it("after 1,000 changes from 5 writers, both replicas agree and Envoy holds exactly the registry", async (t) => {
    const writers = 5;
    const perWriter = 200;
    let retried = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < perWriter; i++) {
          const name = `churn-${w}-${i % 40}`;
          // Like any well-behaved client, retry what the API answers 503 (it may be overloaded).
          for (;;) {
            const response =
              i % 5 === 4
                ? await stack.call("DELETE", `/v1/services/${name}`)
                : await stack.call("PUT", `/v1/services/${name}`, { domains: [`${name}.example.com`], endpoints: [{ address: "127.0.0.1", port: 20_000 + i }] });
            if (response.status === 503) {
              retried++;
              continue;
            }
            assert.ok(response.status < 300 || response.status === 404, `${name}: ${response.status} ${JSON.stringify(response.body)}`);
            break;
          }
        }
      }),
    );
    const wroteMs = performance.now() - started;
    const bucket = await waitFor("both replicas to apply the last write", async () => {
      const { revision } = (await stack.call("GET", "/v1/envoys")).body;
      const states = await replicaStates();
      return states.every((s) => s.revision === revision) ? states : undefined;
    });
    assert.deepEqual(bucket[0]!.resources, bucket[1]!.resources, "same versions and counts on both replicas");

    // Envoy holds exactly what the registry serves (both read afresh on each try: a service's
    // status says "pending" until the replicas' next report, at most half a second later).
    const converged = await waitFor("Envoy to hold the registry", async () => {
      const served = ((await stack.call("GET", "/v1/services")).body.services as {
        name: string;
        domains: string[];
        endpoints: { address: string; port: number }[];
        status: { state: string };
      }[]).filter((s) => s.status.state === "serving");
      const config = await stack.envoy.config();
      const matches =
        config.clusters.join() === served.map((s) => s.name).sort().join() &&
        sameEntries(config.virtualHosts, Object.fromEntries(served.map((s) => [s.name, s.domains]))) &&
        sameEntries(config.endpoints, Object.fromEntries(served.map((s) => [s.name, s.endpoints.map((e) => `${e.address}:${e.port}`)])));
      return matches ? config : undefined;
    });
    t.diagnostic(
      `1,000 changes written in ${wroteMs.toFixed(0)} ms (${retried} retried after 503); ${converged.clusters.length} services on both replicas and in Envoy`,
    );
  });
});

function sameEntries(a: Record<string, string[]>, b: Record<string, string[]>): boolean {
  const keys = Object.keys(a).sort();
  return keys.join() === Object.keys(b).sort().join() && keys.every((k) => a[k]!.join() === b[k]!.join());
}
