// One cluster per service, named after it. IP endpoints come by EDS, so switching upstreams is an
// endpoint update; Envoy cannot take a hostname in EDS, so a service with any hostname endpoint
// gets a STRICT_DNS cluster carrying its endpoints inline.
import { Cluster, Cluster_DiscoveryType, Cluster_DnsLookupFamily } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ApiVersion } from "@envoyage/proto/envoy/config/core/v3/config_source.js";
import { isIpLiteral, type ServiceRecord } from "@envoyage/registry/record";
import { translateLoadAssignment } from "./endpoint.js";

const CONNECT_TIMEOUT = { seconds: 1, nanos: 0 };

/**
 * For a service with several endpoints, two things (with one, there is no other to send to):
 *
 * Envoy stops sending to an endpoint it cannot use: after 5 failures of its own in a row (the
 * connection refused or timed out, a reset, a request timeout) the endpoint is left out for 30 s,
 * then tried again, longer each time it fails again. An upstream answering 5xx is the
 * application's answer, not a reason to stop calling it, and neither is a lower success rate. At
 * most half of a service's endpoints are left out, so a whole pool going down is not mistaken for
 * one bad host.
 *
 * The route retries a request that never reached an endpoint on another (route.ts). Envoy allows
 * 3 retries in flight per cluster by default, which a burst overflows (27 of 60 requests sent at
 * once failed, with one endpoint of two down): here as many as requests (Envoy's max_requests),
 * since these retries are of requests that were never sent.
 */
const MULTI_ENDPOINT = {
  outlierDetection: {
    splitExternalLocalOriginErrors: true,
    consecutiveLocalOriginFailure: 5,
    enforcingConsecutiveLocalOriginFailure: 100,
    enforcingLocalOriginSuccessRate: 0,
    enforcingConsecutive5xx: 0,
    enforcingSuccessRate: 0,
    maxEjectionPercent: 50,
  },
  circuitBreakers: { thresholds: [{ maxRetries: 1024 }] },
};

const multiEndpoint = (record: ServiceRecord) => (record.endpoints.length > 1 ? MULTI_ENDPOINT : {});

/** True when Envoy gets this service's endpoints by EDS rather than by resolving hostnames. */
export function usesEds(record: ServiceRecord): boolean {
  return record.endpoints.every((endpoint) => isIpLiteral(endpoint.address));
}

export function translateCluster(name: string, record: ServiceRecord): Cluster {
  if (usesEds(record)) {
    return Cluster.fromPartial({
      name,
      type: Cluster_DiscoveryType.EDS,
      connectTimeout: CONNECT_TIMEOUT,
      edsClusterConfig: { edsConfig: { ads: {}, resourceApiVersion: ApiVersion.V3 } },
      ...multiEndpoint(record),
    });
  }
  return Cluster.fromPartial({
    name,
    type: Cluster_DiscoveryType.STRICT_DNS,
    connectTimeout: CONNECT_TIMEOUT,
    dnsLookupFamily: Cluster_DnsLookupFamily.V4_PREFERRED,
    loadAssignment: translateLoadAssignment(name, record),
    ...multiEndpoint(record),
  });
}
