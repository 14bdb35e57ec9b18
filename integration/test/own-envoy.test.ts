// An operator's own Envoy whose bootstrap has a static cluster named like a service: Envoy keeps
// its static cluster, never asks for the service's endpoints, and so never gets listeners or
// routes. The replica it is connected to says so, once, with the cluster's name.
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { record, REPO_ROOT, sleep, startEnvoy, startStack, waitFor, type Envoy, type Stack } from "@envoyage/test-support";

describe("an own Envoy with a static cluster named like a service", () => {
  let stack: Stack;
  let envoy: Envoy | undefined;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await envoy?.stop();
    await stack?.stop();
  });

  it("is named in the replica's log, with the cluster and what to change", async () => {
    assert.equal((await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A))).status, 201);
    const bootstrap = parse(await readFile(join(REPO_ROOT, "envoy", "bootstrap.yaml"), "utf8")) as { static_resources: { clusters: unknown[] } };
    bootstrap.static_resources.clusters.push({
      name: "web",
      type: "STATIC",
      load_assignment: { cluster_name: "web", endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: stack.upstreams.B.port } } } }] }] },
    });
    const file = join(await mkdtemp(join(tmpdir(), "envoyage-own-envoy-")), "bootstrap.yaml");
    await writeFile(file, stringify(bootstrap));
    envoy = await startEnvoy({ bootstrap: file, nodeId: "clashing", xdsPorts: stack.replicas.map((replica) => replica.xdsPort) });

    const line = await waitFor(
      "the replica's warning",
      () => stack.replicas.map((replica) => replica.process.output()).join("\n").split("\n").find((l) => l.includes("never asked for their endpoints")),
      { timeoutMs: 15_000 },
    );
    assert.match(line, /"node":"clashing","clusters":\["web"\]/);
    assert.match(line, /keep a _ in static cluster names/);
    assert.equal(await envoy.stat("listener_manager.total_listeners_active"), 0, "as the warning says: no listener");
    await sleep(2_000);
    const lines = stack.replicas.flatMap((replica) => replica.process.output().split("\n")).filter((l) => l.includes("never asked for their endpoints"));
    assert.equal(lines.length, 1, "once");
  });
});
