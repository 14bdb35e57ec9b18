// One route configuration for the one listener: a virtual host per service, matched on the Host
// header. A host no virtual host claims gets Envoy's own 404.
import { RouteConfiguration } from "@envoyage/proto/envoy/config/route/v3/route.js";
import { VirtualHost } from "@envoyage/proto/envoy/config/route/v3/route_components.js";
import type { ServiceRecord } from "@envoyage/registry/record";
import { ROUTE_CONFIG_NAME } from "./names.js";

/**
 * A request to a service with several endpoints that could not reach one (it refused the
 * connection, or reset the stream before the request went out) is sent to another, twice at most:
 * the request never reached an application, so retrying it cannot repeat anything. Services with
 * one endpoint go without it, keeping the route configuration (every service's, in one resource)
 * small for the registries where that adds up.
 */
const RETRY_ON_ANOTHER_ENDPOINT = {
  retryOn: "connect-failure,refused-stream,reset-before-request",
  numRetries: 2,
  // Another endpoint than the ones already tried (an empty PreviousHostsPredicate).
  retryHostPredicate: [
    {
      name: "envoy.retry_host_predicates.previous_hosts",
      typedConfig: { typeUrl: "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", value: Buffer.alloc(0) },
    },
  ],
  hostSelectionRetryMaxAttempts: 3,
};

export function translateVirtualHost(name: string, record: ServiceRecord): VirtualHost {
  const retryPolicy = record.endpoints.length > 1 ? { retryPolicy: RETRY_ON_ANOTHER_ENDPOINT } : {};
  return VirtualHost.fromPartial({
    name,
    domains: record.domains,
    routes: [{ match: { prefix: "/" }, route: { cluster: name, ...retryPolicy } }],
  });
}

/** The route configuration; virtual hosts must come sorted by name, for identical bytes everywhere. */
export function translateRouteConfiguration(virtualHosts: VirtualHost[]): RouteConfiguration {
  return RouteConfiguration.fromPartial({ name: ROUTE_CONFIG_NAME, virtualHosts });
}
