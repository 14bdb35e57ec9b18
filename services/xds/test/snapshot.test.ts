import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Cluster } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import { RouteConfiguration } from "@envoyage/proto/envoy/config/route/v3/route.js";
import { Any } from "@envoyage/proto/google/protobuf/any.js";
import type { ServiceRecord } from "@envoyage/registry";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from "../src/ads/resources.js";
import { SnapshotStore } from "../src/snapshot.js";
import { translateRegistry } from "../src/translate/index.js";

const OPTIONS = { listenerAddress: "127.0.0.1", listenerPort: 10000 };

function record(n: number, address = `10.0.${Math.floor(n / 250)}.${n % 250}`): ServiceRecord {
  return { domains: [`s${n}.example.com`], endpoints: [{ address, port: 8000 + n }] };
}

function storeWith(services: [string, ServiceRecord][]): SnapshotStore {
  const store = new SnapshotStore(OPTIONS);
  for (const [name, r] of services) store.setService(name, r);
  store.commit();
  return store;
}

function versions(store: SnapshotStore): string[] {
  return [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE].map((t) => store.resources(t).version);
}

describe("SnapshotStore", () => {
  const services: [string, ServiceRecord][] = [
    ["web", record(1)],
    ["api", record(2)],
    ["dns", { domains: ["dns.example.com"], endpoints: [{ address: "dns-a.internal", port: 80 }] }],
    ["v6", { domains: ["v6.example.com", "*.v6.example.com"], endpoints: [{ address: "::1", port: 81 }] }],
  ];

  it("encodes exactly what translateRegistry produces", () => {
    const store = storeWith(services);
    const expected = translateRegistry(new Map(services), OPTIONS);
    const anyValue = (type: string, name: string) => Any.decode(store.resources(type).get(name)!.any).value;

    assert.deepEqual(
      anyValue(ROUTE_TYPE, "envoyage_http"),
      Buffer.from(RouteConfiguration.encode(expected.routes[0]!).finish()),
    );
    for (const cluster of expected.clusters) {
      assert.deepEqual(anyValue(CLUSTER_TYPE, cluster.name), Buffer.from(Cluster.encode(cluster).finish()));
    }
    for (const cla of expected.endpoints) {
      assert.deepEqual(anyValue(ENDPOINT_TYPE, cla.clusterName), Buffer.from(ClusterLoadAssignment.encode(cla).finish()));
    }
    assert.equal(store.resources(CLUSTER_TYPE).size, 4);
    assert.equal(store.resources(ENDPOINT_TYPE).size, 3, "the DNS cluster carries its endpoints inline");
  });

  it("gives identical versions for identical registries, whatever the order of changes", () => {
    const forward = storeWith(services);
    const backward = storeWith([...services].reverse());
    assert.deepEqual(versions(forward), versions(backward));

    // Reaching the same state through extra changes gives the same versions too.
    const detour = new SnapshotStore(OPTIONS);
    detour.setService("gone", record(9));
    detour.setService("web", record(3));
    detour.commit();
    for (const [name, r] of services) detour.setService(name, r);
    detour.removeService("gone");
    detour.commit();
    assert.deepEqual(versions(detour), versions(forward));
  });

  it("changes only the types a change touches", () => {
    const store = storeWith(services);
    const before = versions(store);
    store.setService("web", { ...record(1), endpoints: [{ address: "10.9.9.9", port: 1 }] });
    const stats = store.commit();
    assert.deepEqual(stats?.changed, [ENDPOINT_TYPE], "an endpoint switch is an EDS update only");
    const after = versions(store);
    assert.notEqual(after[1], before[1]);
    assert.deepEqual([after[0], after[2], after[3]], [before[0], before[2], before[3]]);
    assert.deepEqual([...store.resources(ENDPOINT_TYPE).changedSince(before[1]!)!], ["web"]);
  });

  it("keeps each resource's bytes in memory of their own, not in a slice of Node's shared buffer pool", () => {
    // A pooled slice keeps its whole slab (64 KiB on Node 26) alive for as long as the resource is kept.
    const store = storeWith(services);
    store.removeService("web");
    store.commit();
    const kept = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE].flatMap((type) => [...store.resources(type).values()]);
    const retired = store.resources(CLUSTER_TYPE).retired("web")!;
    assert.ok(retired, "web's cluster is kept as retired");
    for (const resource of [...kept, retired]) {
      assert.equal(resource.sotwField.buffer.byteLength, resource.sotwField.length, `${resource.name}: ${resource.sotwField.buffer.byteLength} bytes held for ${resource.sotwField.length}`);
    }
  });

  it("does not commit when nothing changed", () => {
    const store = storeWith(services);
    store.setService("web", record(1));
    assert.equal(store.commit(), undefined);
  });

  it("retires removed resources for make-before-break", () => {
    const store = storeWith(services);
    const serial = store.serial;
    store.removeService("api");
    store.commit();
    assert.equal(store.resources(CLUSTER_TYPE).has("api"), false);
    assert.deepEqual(store.resources(CLUSTER_TYPE).retiredSince(serial).map((r) => r.name), ["api"]);
    assert.deepEqual(store.resources(CLUSTER_TYPE).retiredSince(store.serial), []);
  });

  it("switching a service from IPs to a hostname drops its EDS resource", () => {
    const store = storeWith(services);
    store.setService("web", { domains: ["s1.example.com"], endpoints: [{ address: "web-a", port: 80 }] });
    store.commit();
    assert.equal(store.resources(ENDPOINT_TYPE).has("web"), false);
    assert.equal(store.resources(CLUSTER_TYPE).has("web"), true);
  });

  it("validates before publishing: a domain in two virtual hosts is rejected, the rest goes through", () => {
    const store = storeWith([["a", { domains: ["d.example.com"], endpoints: [{ address: "10.0.0.1", port: 1 }] }]]);
    const routesBefore = store.resources(ROUTE_TYPE).version;
    store.setService("b", { domains: ["d.example.com", "b.example.com"], endpoints: [{ address: "10.0.0.2", port: 2 }] });
    store.setService("c", record(3));
    const stats = store.commit();
    assert.deepEqual(stats?.rejected, [{ name: "b", problems: ["domain d.example.com is already in virtual host a"] }]);
    assert.equal(store.resources(CLUSTER_TYPE).has("b"), false, "nothing of the rejected service is published");
    assert.equal(store.resources(CLUSTER_TYPE).has("c"), true, "the rest of the commit is");
    assert.notEqual(store.resources(ROUTE_TYPE).version, routesBefore);
  });

  it("lets a domain move between services within one commit", () => {
    const store = storeWith([["a", { domains: ["d.example.com"], endpoints: [{ address: "10.0.0.1", port: 1 }] }]]);
    store.setService("b", { domains: ["d.example.com"], endpoints: [{ address: "10.0.0.2", port: 2 }] });
    store.setService("a", { domains: ["a.example.com"], endpoints: [{ address: "10.0.0.1", port: 1 }] });
    assert.deepEqual(store.commit()?.rejected, []);
    assert.equal(store.resources(CLUSTER_TYPE).size, 2);
    // The new holder keeps the domain, whatever the order the two were staged in.
    store.setService("c", { domains: ["d.example.com"], endpoints: [{ address: "10.0.0.3", port: 3 }] });
    assert.deepEqual(store.commit()?.rejected, [{ name: "c", problems: ["domain d.example.com is already in virtual host b"] }]);
  });

  it("keeps a rejected service's previous resources", () => {
    const store = storeWith([
      ["a", { domains: ["a.example.com"], endpoints: [{ address: "10.0.0.1", port: 1 }] }],
      ["b", { domains: ["b.example.com"], endpoints: [{ address: "10.0.0.2", port: 2 }] }],
    ]);
    const before = store.resources(ENDPOINT_TYPE).get("b")!.version;
    store.setService("b", { domains: ["a.example.com"], endpoints: [{ address: "10.0.0.9", port: 9 }] });
    assert.equal(store.commit()?.rejected[0]?.name, "b");
    assert.equal(store.resources(ENDPOINT_TYPE).get("b")!.version, before);
  });

  describe("the route configuration's size limit", () => {
    const LIMIT = 4096;
    /** A record whose virtual host is about `count` × 60 bytes. */
    const wide = (name: string, count: number, extra: string[] = []): ServiceRecord => ({
      domains: [...extra, ...Array.from({ length: count }, (_, i) => `${name}-${i}-${"x".repeat(40)}.example.com`)],
      endpoints: [{ address: "10.0.0.1", port: 1 }],
    });
    const routes = (store: SnapshotStore) => RouteConfiguration.decode(Any.decode(store.resources(ROUTE_TYPE).get("envoyage_http")!.any).value);

    it("refuses the service that would take it over the limit, and later route changes still go out", () => {
      const store = new SnapshotStore({ ...OPTIONS, maxRouteConfigurationBytes: LIMIT });
      store.setService("a", wide("a", 30));
      assert.deepEqual(store.commit()?.rejected, []);
      store.setService("b", wide("b", 40));
      const stats = store.commit();
      assert.equal(stats?.rejected.length, 1);
      assert.equal(stats.rejected[0]!.name, "b");
      assert.match(stats.rejected[0]!.problems[0]!, /would take the route configuration to \d+ bytes, over 4096/);
      assert.equal(store.resources(CLUSTER_TYPE).has("b"), false);
      assert.ok(store.resources(ROUTE_TYPE).get("envoyage_http")!.any.length <= LIMIT);

      store.setService("c", record(3));
      assert.deepEqual(store.commit()?.rejected.map((r) => r.name), ["b"], "b is offered again, and still refused");
      assert.deepEqual(routes(store).virtualHosts.map((v) => v.name), ["a", "c"], "a later route change is published");
      store.removeService("a");
      assert.deepEqual(store.commit()?.rejected, [], "b goes through by itself once there is room");
      assert.deepEqual(routes(store).virtualHosts.map((v) => v.name), ["b", "c"]);
    });

    it("forgets a refused service once it is replaced or removed", () => {
      const store = new SnapshotStore({ ...OPTIONS, maxRouteConfigurationBytes: LIMIT });
      store.setService("a", wide("a", 30));
      store.commit();
      store.setService("b", wide("b", 40));
      assert.equal(store.commit()?.rejected.length, 1);
      store.removeService("b");
      assert.equal(store.commit(), undefined, "nothing to publish, nothing refused");
      store.setService("b", wide("b", 40));
      assert.equal(store.commit()?.rejected.length, 1);
      store.setService("b", wide("b", 2));
      assert.deepEqual(store.commit()?.rejected, [], "the replacement is what is offered");
      assert.deepEqual(routes(store).virtualHosts.map((v) => v.name), ["a", "b"]);
    });

    it("counts room a shrinking service frees in the same commit, whatever the order", () => {
      const store = new SnapshotStore({ ...OPTIONS, maxRouteConfigurationBytes: LIMIT });
      store.setService("a", wide("a", 30));
      store.commit();
      store.setService("b", wide("b", 40)); // staged first: fits only once a has shrunk
      store.setService("a", wide("a", 5));
      assert.deepEqual(store.commit()?.rejected, []);
      assert.deepEqual(routes(store).virtualHosts.map((v) => v.name), ["a", "b"]);
    });

    it("rejects, with a service refused for size, one given a domain the refused one keeps", () => {
      const store = new SnapshotStore({ ...OPTIONS, maxRouteConfigurationBytes: LIMIT });
      store.setService("a", { domains: ["shared.example.com"], endpoints: [{ address: "10.0.0.1", port: 1 }] });
      store.setService("b", { domains: ["b.example.com"], endpoints: [{ address: "10.0.0.2", port: 2 }] });
      store.commit();
      // In one commit, b takes the domain a drops, but a's new virtual host does not fit: a keeps
      // what it had, shared.example.com included, so b cannot have it either.
      store.setService("b", { domains: ["b.example.com", "shared.example.com"], endpoints: [{ address: "10.0.0.2", port: 2 }] });
      store.setService("a", wide("a", 80));
      const rejected = store.commit()?.rejected.map((r) => r.name).sort();
      assert.deepEqual(rejected, ["a", "b"]);
      const domains = routes(store).virtualHosts.flatMap((v) => v.domains);
      assert.deepEqual(domains.sort(), ["b.example.com", "shared.example.com"], "no domain in two virtual hosts");
    });
  });
});
