// One route configuration for the one listener: a virtual host per service, matched on the Host
// header. A host no virtual host claims gets Envoy's own 404.
import { RouteConfiguration } from "@envoyage/proto/envoy/config/route/v3/route.js";
import { VirtualHost } from "@envoyage/proto/envoy/config/route/v3/route_components.js";
import type { ServiceRecord } from "@envoyage/registry/record";
import { ROUTE_CONFIG_NAME } from "./names.js";

export function translateVirtualHost(name: string, record: ServiceRecord): VirtualHost {
  return VirtualHost.fromPartial({
    name,
    domains: record.domains,
    routes: [{ match: { prefix: "/" }, route: { cluster: name } }],
  });
}

/** The route configuration; virtual hosts must come sorted by name, for identical bytes everywhere. */
export function translateRouteConfiguration(virtualHosts: VirtualHost[]): RouteConfiguration {
  return RouteConfiguration.fromPartial({ name: ROUTE_CONFIG_NAME, virtualHosts });
}
