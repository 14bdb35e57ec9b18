// Translation from service records to Envoy resources: pure functions of their inputs (no NATS,
// no gRPC, no clock), so the same registry gives the same resources on every replica.
import type { Cluster } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import type { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import type { Listener } from "@envoyage/proto/envoy/config/listener/v3/listener.js";
import type { RouteConfiguration } from "@envoyage/proto/envoy/config/route/v3/route.js";
import type { VirtualHost } from "@envoyage/proto/envoy/config/route/v3/route_components.js";
import type { ServiceRecord } from "@envoyage/registry/record";
import { translateCluster, usesEds } from "./cluster.js";
import { translateLoadAssignment } from "./endpoint.js";
import { translateListener } from "./listener.js";
import type { TranslateOptions } from "./names.js";
import { translateRouteConfiguration, translateVirtualHost } from "./route.js";

export { LISTENER_NAME, ROUTE_CONFIG_NAME, type TranslateOptions } from "./names.js";
export { translateListener } from "./listener.js";

/** What one service contributes to Envoy's configuration. */
export interface ServiceResources {
  cluster: Cluster;
  /** Present when the cluster is EDS; a DNS cluster carries its endpoints inline. */
  loadAssignment: ClusterLoadAssignment | undefined;
  virtualHost: VirtualHost;
}

export function translateService(name: string, record: ServiceRecord): ServiceResources {
  return {
    cluster: translateCluster(name, record),
    loadAssignment: usesEds(record) ? translateLoadAssignment(name, record) : undefined,
    virtualHost: translateVirtualHost(name, record),
  };
}

export interface EnvoyResources {
  listeners: Listener[];
  routes: RouteConfiguration[];
  clusters: Cluster[];
  endpoints: ClusterLoadAssignment[];
}

/** The whole configuration for a registry of servable services (conflicts already resolved). */
export function translateRegistry(services: ReadonlyMap<string, ServiceRecord>, options: TranslateOptions): EnvoyResources {
  const names = [...services.keys()].sort();
  const translated = names.map((name) => translateService(name, services.get(name)!));
  return {
    listeners: [translateListener(options)],
    routes: [translateRouteConfiguration(translated.map((t) => t.virtualHost))],
    clusters: translated.map((t) => t.cluster),
    endpoints: translated.flatMap((t) => (t.loadAssignment ? [t.loadAssignment] : [])),
  };
}
