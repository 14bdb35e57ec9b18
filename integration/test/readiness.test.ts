// The readiness gate at size: Envoy, holding 1,000 routes from one replica, fails over to a
// replica that has not loaded those 1,000 services yet. It must never be sent a partial
// registry: its route count never drops, and requests never fail.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  freePort,
  record,
  replicaStatus,
  startApi,
  startEnvoy,
  startLoad,
  startNats,
  startUpstream,
  startXds,
  waitFor,
  type ApiProcess,
  type Envoy,
  type NatsServer,
  type Upstream,
  type XdsProcess,
} from "@envoyage/test-support";

const SERVICES = 1000;

describe("readiness gate at size", () => {
  let nats: NatsServer;
  let api: ApiProcess;
  let upstream: Upstream;
  let envoy: Envoy;
  const replicas: XdsProcess[] = [];
  let listenerPort: number;

  before(async () => {
    nats = await startNats();
    api = await startApi({ natsUrl: nats.url });
    upstream = await startUpstream("A");
    listenerPort = await freePort();
    for (let i = 0; i < SERVICES; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const response = await fetch(`${api.url}/v1/services/s${i + j}`, {
            method: "PUT",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(record(upstream, [`s${i + j}.example.com`])),
          });
          assert.equal(response.status, 201);
        }),
      );
    }
  });

  after(async () => {
    await envoy?.stop();
    for (const replica of replicas) await replica.stop();
    await api?.stop();
    await nats?.stop();
    await upstream?.close();
  });

  const routes = async () => Object.keys(await envoy.virtualHosts()).length;

  it("an Envoy failing over to a replica that is still loading keeps all 1,000 routes throughout", async (t) => {
    const first = await startXds({ natsUrl: nats.url, listenerPort });
    replicas.push(first);
    await first.ready(20_000);
    const secondPort = await freePort();
    envoy = await startEnvoy({ xdsPorts: [first.xdsPort, secondPort] });
    // A config dump of 1,000 routes is work for Envoy's main thread, which also applies the config:
    // looked at four times a second, not fifty. Failing, say what Envoy and the replica got to.
    let held: number | undefined;
    const holdsAll = async () => ((held = await routes()) === SERVICES ? true : undefined);
    await waitFor("Envoy to hold 1,000 routes", holdsAll, { timeoutMs: 30_000, intervalMs: 250 }).catch(
      async (error: Error) => {
        let detail: string;
        try {
          const stats = [...(await envoy.stats())].filter(([name]) => /^(cluster_manager\.(cds|active_clusters|warming)|control_plane\.|listener_manager\.lds|http\..*\.rds\.)/.test(name));
          detail = `Envoy: ${stats.map(([name, value]) => `${name}=${value}`).join(" ")}\nreplica /status: ${JSON.stringify(await replicaStatus(first)).slice(0, 2000)}`;
        } catch (failed) {
          detail = `(could not read Envoy's stats or the replica's status: ${(failed as Error).message})`;
        }
        throw new Error(`${error.message}; it held ${held ?? "no"} routes when last looked at\n${detail}`);
      },
    );

    // Watch Envoy's routes and traffic from now until it is served by the second replica.
    let watching = true;
    let fewest = SERVICES;
    let samples = 0;
    const monitor = (async () => {
      while (watching) {
        fewest = Math.min(fewest, await routes());
        samples++;
      }
    })();
    const load = startLoad(t, { port: listenerPort, host: "s999.example.com" });

    // NATS is frozen while the second replica starts, so it cannot load the registry yet; the
    // first one dies, and Envoy reconnects to the second before it has loaded anything.
    nats.process.pause();
    const second = await startXds({ natsUrl: nats.url, listenerPort, xdsPort: secondPort });
    replicas.push(second);
    await first.kill();
    const status = () => replicaStatus<{ ready: boolean; streams: { sotw: number } }>(second);
    await waitFor("Envoy to connect to the second replica", async () => ((await status()).streams.sotw === 1 ? true : undefined), {
      timeoutMs: 15_000,
    });
    assert.equal((await status()).ready, false, "the second replica has not loaded the registry yet");
    nats.process.resume();
    await second.ready(20_000);
    // Proof that Envoy takes config from it now: a new service arrives.
    await fetch(`${api.url}/v1/services/newcomer`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(record(upstream, ["newcomer.example.com"])),
    });
    await waitFor("the newcomer", async () => ((await routes()) === SERVICES + 1 ? true : undefined));
    watching = false;
    await monitor;
    const result = await load.stop();

    t.diagnostic(
      `${samples} looks at Envoy's routes during the failover, fewest ${fewest}; ${result.requests} requests, ${result.non2xx + result.errors} failed`,
    );
    assert.equal(fewest, SERVICES, "Envoy never held fewer than 1,000 routes");
    assert.ok(samples > 10);
    assert.equal(result.non2xx + result.errors + result.timeouts, 0);
  });
});
