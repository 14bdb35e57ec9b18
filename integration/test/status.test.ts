// Sync status end to end with a real Envoy: GET /v1/envoys, the status of each service, and a real
// rejection by Envoy (a listener port already taken) that is reported, never resent, and
// recovered from once a fixed version arrives.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  AdsClient,
  freePort,
  record,
  replicaStatus,
  startApi,
  startEnvoy,
  startNats,
  startStack,
  startXds,
  upstreamGreeting,
  waitFor,
  type Stack,
} from "@envoyage/test-support";

interface EnvoyLine {
  node: string;
  status: string;
  replica: string;
  streams: number;
  types: Record<string, { nacked: { error: string } | null }>;
}

describe("sync status", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  const envoys = async () => (await stack.call("GET", "/v1/envoys")).body as { revision: number; envoys: EnvoyLine[] };

  it("shows the Envoy SYNCED once it holds the latest write, and each service acknowledged by it", async () => {
    const put = await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
    await stack.until("web.example.com", upstreamGreeting("A"));
    await waitFor("the Envoy to be reported SYNCED", async () => {
      const list = await envoys();
      return list.envoys.length === 1 && list.envoys[0]!.status === "SYNCED" ? true : undefined;
    });
    const line = (await envoys()).envoys[0]!;
    assert.equal(line.node, "envoyage-test");
    assert.ok(stack.replicas.some((r) => line.replica === `xds-${r.xdsPort}`));
    const service = await waitFor("the service to be acknowledged", async () => {
      const body = (await stack.call("GET", "/v1/services/web")).body;
      return body.status.envoys.acked === 1 ? body : undefined;
    });
    assert.equal(service.revision, put.body.revision);
    assert.deepEqual(service.status, { state: "serving", envoys: { connected: 1, acked: 1 } });
  });

  it("keeps the Envoy SYNCED past keys the replicas ignore, lists no service for them, and says why each is ignored", async () => {
    await stack.natsCli("kv", "put", "envoyage", "notes.readme", "not a registry key");
    await stack.natsCli("kv", "put", "envoyage", "services.Upper", JSON.stringify(record(stack.upstreams.B, ["upper.example.com"])));
    // SYNCED: the Envoy holds the bucket's latest revision, which these two writes raised.
    await waitFor("the Envoy to be SYNCED with the latest revision", async () => ((await envoys()).envoys[0]?.status === "SYNCED" ? true : undefined));
    const services = (await stack.call("GET", "/v1/services")).body.services as { name: string }[];
    assert.deepEqual(services.map((s) => s.name), ["web"]);
    for (const replica of stack.replicas) {
      const { ignoredKeys: ignored } = await replicaStatus<{ ignoredKeys: { count: number; keys: Record<string, { problem: string }> } }>(replica);
      assert.equal(ignored.count, 2);
      assert.match(ignored.keys["notes.readme"]?.problem ?? "", /outside the registry layout/);
      assert.match(ignored.keys["services.Upper"]?.problem ?? "", /"Upper" is not a service name/);
      assert.match(await (await fetch(`${replica.statusUrl}/metrics`)).text(), /envoyage_registry_ignored_keys 2\n/);
    }
    await stack.natsCli("kv", "del", "--force", "envoyage", "notes.readme");
    await stack.natsCli("kv", "del", "--force", "envoyage", "services.Upper");
  });

  it("reports a record that loses a domain conflict, and one that is invalid, with why", async () => {
    await stack.natsCli("kv", "put", "envoyage", "services.intruder", JSON.stringify(record(stack.upstreams.B, ["web.example.com"])));
    await stack.natsCli("kv", "put", "envoyage", "services.broken", '{"domains":["broken.example.com"],"endpoints":[]}');
    const intruder = await waitFor("the conflict to be reported", async () => {
      const body = (await stack.call("GET", "/v1/services/intruder")).body;
      return body.status.state === "conflict" ? body : undefined;
    });
    assert.deepEqual(intruder.status.conflicts, [{ domain: "web.example.com", heldBy: "web" }]);
    const broken = await waitFor("the invalid record to be reported", async () => {
      const body = (await stack.call("GET", "/v1/services/broken")).body;
      return body.status.state === "invalid" ? body : undefined;
    });
    assert.match(broken.status.problem, /\/endpoints must not be empty/);
    assert.equal(broken.status.servingRevision, null, "never valid: nothing of it is routed");
    assert.equal(intruder.status.servingRevision, null, "it lost its domain: not routed");
    assert.equal((await stack.get("web.example.com")).body, upstreamGreeting("A"), "the holder keeps serving");
    const metrics = await (await fetch(`${stack.replicas[0]!.statusUrl}/metrics`)).text();
    assert.match(metrics, /envoyage_registry_services\{state="conflict"\} 1/);
    assert.match(metrics, /envoyage_registry_services\{state="invalid"\} 1/);
  });

  it("keeps routing the last good revision of a service the CLI rewrote into a conflict", async () => {
    await stack.call("PUT", "/v1/services/other", record(stack.upstreams.B, ["other.example.com"]));
    await stack.until("other.example.com", upstreamGreeting("B"));
    const good = (await stack.call("GET", "/v1/services/web")).body.revision as number;
    await stack.natsCli("kv", "put", "envoyage", "services.web", JSON.stringify(record(stack.upstreams.B, ["web.example.com", "other.example.com"])));
    const web = await waitFor("the conflict to be reported", async () => {
      const body = (await stack.call("GET", "/v1/services/web")).body;
      return body.status.state === "conflict" ? body : undefined;
    });
    assert.deepEqual(web.status.conflicts, [{ domain: "other.example.com", heldBy: "other" }]);
    assert.equal(web.status.servingRevision, good);
    assert.equal((await stack.get("web.example.com")).body, upstreamGreeting("A"), "the last good revision keeps serving");
    await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
    await waitFor("web to serve its latest record again", async () => ((await stack.call("GET", "/v1/services/web")).body.status.state === "serving" ? true : undefined));
  });

  it("counts the streams of Envoys sharing a node id on its one line, and the replica they share says so", async () => {
    const line = (await envoys()).envoys[0]!;
    assert.equal(line.streams, 1);
    const replica = stack.replicas.find((r) => line.replica === `xds-${r.xdsPort}`)!;
    // A second "Envoy" from a copied bootstrap: same node id, same replica.
    const twin = new AdsClient({ port: replica.xdsPort, nodeId: line.node });
    try {
      await waitFor("two streams on the node id's line", async () => ((await envoys()).envoys[0]?.streams === 2 ? true : undefined));
      assert.equal((await envoys()).envoys.length, 1, "still one line per node id");
      await waitFor("the replica's warning", async () => (replica.process.output().includes("two Envoys present the same node id") ? true : undefined));
    } finally {
      twin.close();
    }
    await waitFor("one stream again", async () => ((await envoys()).envoys[0]?.streams === 1 ? true : undefined));
  });

  it("shows an Envoy that went away as DISCONNECTED", async () => {
    await stack.envoy.stop();
    await waitFor("the Envoy to be reported DISCONNECTED", async () => {
      const list = await envoys();
      return list.envoys.length === 1 && list.envoys[0]!.status === "DISCONNECTED" ? true : undefined;
    });
    assert.deepEqual((await stack.call("GET", "/v1/services/web")).body.status.envoys, { connected: 0, acked: 0 });
  });

  it("logged nothing but JSON lines from the API, after every kind of record was listed and read", () => {
    const lines = stack.api.process.output().split("\n").filter((line) => line.trim() !== "");
    assert.ok(lines.length > 0);
    const notJson = lines.filter((line) => {
      try {
        return typeof JSON.parse(line) !== "object";
      } catch {
        return true;
      }
    });
    assert.deepEqual(notJson, []);
  });
});

describe("a real NACK from Envoy", () => {
  let busy: Server;
  const cleanup: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const stop of cleanup.reverse()) await stop();
    busy?.close();
  });

  it("is reported with Envoy's error, never resent, and recovered from by a fixed version", async () => {
    // Another program holds the port the replicas tell Envoy to listen on: Envoy rejects the listener.
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const takenPort = (busy.address() as { port: number }).port;
    const nats = await startNats();
    cleanup.push(() => nats.stop());
    const api = await startApi({ natsUrl: nats.url });
    cleanup.push(() => api.stop());
    const first = await startXds({ natsUrl: nats.url, listenerPort: takenPort });
    await first.ready();
    const envoy = await startEnvoy({ xdsPorts: [first.xdsPort] });
    cleanup.push(() => envoy.stop());

    const nacked = await waitFor("the NACK to be reported", async () => {
      const list = (await (await fetch(`${api.url}/v1/envoys`)).json()) as { envoys: EnvoyLine[] };
      return list.envoys.find((e) => e.status === "NACKED");
    });
    assert.match(nacked.types["LDS"]!.nacked!.error, /cannot bind '127\.0\.0\.1:\d+': Address already in use/);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const metrics = await (await fetch(`${first.statusUrl}/metrics`)).text();
    assert.match(metrics, /envoyage_xds_nacks_total\{type="LDS"\} 1\n/);
    assert.match(metrics, /envoyage_xds_pushes_total\{type="LDS",protocol="sotw"\} 1\n/, "the rejected version was not resent");
    assert.equal(await envoy.stat("listener_manager.lds.update_rejected"), 1);

    // The fix: replicas that configure a free port. Envoy reconnects and accepts the new listener.
    await first.stop();
    const listenerPort = await freePort();
    const fixed = await startXds({ natsUrl: nats.url, listenerPort, xdsPort: first.xdsPort });
    cleanup.push(() => fixed.stop());
    await waitFor("the Envoy to be SYNCED again", async () => {
      const list = (await (await fetch(`${api.url}/v1/envoys`)).json()) as { envoys: EnvoyLine[] };
      return list.envoys.find((e) => e.status === "SYNCED" && e.replica === `xds-${fixed.xdsPort}`);
    }, { timeoutMs: 15_000 });
    assert.equal(await envoy.stat("listener_manager.lds.update_success"), 1);
  });
});
