import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { Cluster } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import { Listener } from "@envoyage/proto/envoy/config/listener/v3/listener.js";
import { RouteConfiguration } from "@envoyage/proto/envoy/config/route/v3/route.js";
import type { ServiceRecord } from "@envoyage/registry";
import { translateRegistry, type EnvoyResources } from "../src/translate/index.js";
import { expandAnys } from "./support/render.js";

// Golden files live beside the test sources; `npm run test:update-golden -w @envoyage/xds`
// (UPDATE_GOLDEN=1) rewrites them after a deliberate change, to be reviewed in the diff.
const GOLDEN = new URL("../../test/golden/", import.meta.url);
const UPDATE = process.env["UPDATE_GOLDEN"] === "1";
const OPTIONS = { listenerAddress: "0.0.0.0", listenerPort: 10000 };

function render(resources: EnvoyResources): unknown {
  return expandAnys({
    listeners: resources.listeners.map((r) => Listener.toJSON(r)),
    routes: resources.routes.map((r) => RouteConfiguration.toJSON(r)),
    clusters: resources.clusters.map((r) => Cluster.toJSON(r)),
    endpoints: resources.endpoints.map((r) => ClusterLoadAssignment.toJSON(r)),
  });
}

async function assertGolden(name: string, services: Record<string, ServiceRecord>): Promise<void> {
  const actual = `${JSON.stringify(render(translateRegistry(new Map(Object.entries(services)), OPTIONS)), null, 2)}\n`;
  const file = new URL(`${name}.json`, GOLDEN);
  if (UPDATE) {
    await writeFile(file, actual);
    return;
  }
  const expected = await readFile(file, "utf8").catch(() => {
    throw new Error(`golden file ${file.pathname} is missing: run with UPDATE_GOLDEN=1 to create it`);
  });
  assert.equal(actual, expected, `${name}: translation differs from ${file.pathname}`);
}

describe("translateRegistry golden files", () => {
  it("an empty registry: the listener and an empty route configuration", () => assertGolden("empty", {}));

  it("the minimal record: an EDS cluster and its endpoints", () =>
    assertGolden("minimal", {
      web: { domains: ["web.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] },
    }));

  it("mixed services: hostnames get DNS clusters, IPv6, wildcards, sorted by name", () =>
    assertGolden("mixed", {
      zeta: { domains: ["zeta.example.com", "*.zeta.example.com"], endpoints: [{ address: "::1", port: 8080 }] },
      api: {
        domains: ["api.example.com"],
        endpoints: [
          { address: "10.0.0.1", port: 80 },
          { address: "10.0.0.2", port: 80 },
        ],
      },
      legacy: {
        domains: ["legacy.example.com"],
        endpoints: [
          { address: "legacy-a.internal", port: 8080 },
          { address: "10.0.0.9", port: 8080 },
        ],
      },
    }));
});

describe("translateRegistry", () => {
  it("is deterministic: insertion order does not change the output", () => {
    const a = { domains: ["a.com"], endpoints: [{ address: "10.0.0.1", port: 1 }] };
    const b = { domains: ["b.com"], endpoints: [{ address: "10.0.0.2", port: 2 }] };
    const one = translateRegistry(new Map([["a", a], ["b", b]]), OPTIONS);
    const two = translateRegistry(new Map([["b", b], ["a", a]]), OPTIONS);
    assert.deepEqual(
      RouteConfiguration.encode(one.routes[0]!).finish(),
      RouteConfiguration.encode(two.routes[0]!).finish(),
    );
    assert.deepEqual(one.clusters.map((c) => c.name), ["a", "b"]);
  });
});
