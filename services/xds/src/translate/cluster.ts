// One cluster per service, named after it. IP endpoints come by EDS, so switching upstreams is an
// endpoint update; Envoy cannot take a hostname in EDS, so a service with any hostname endpoint
// gets a STRICT_DNS cluster carrying its endpoints inline.
import { Cluster, Cluster_DiscoveryType, Cluster_DnsLookupFamily } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ApiVersion } from "@envoyage/proto/envoy/config/core/v3/config_source.js";
import { isIpLiteral, type ServiceRecord } from "@envoyage/registry/record";
import { translateLoadAssignment } from "./endpoint.js";

const CONNECT_TIMEOUT = { seconds: 1, nanos: 0 };

/**
 * A service with several endpoints stops sending to one that cannot be reached: after 5 failures
 * in a row to connect (or resets, timeouts) it is left out for 30 s, then tried again, longer each
 * time it fails again. Only failures of Envoy's own (local origin) count: an upstream answering
 * 5xx is the application's answer, not a reason to stop calling it. At most half of a service's
 * endpoints are left out, so a whole pool going down is not mistaken for one bad host.
 */
const OUTLIER_DETECTION = {
  splitExternalLocalOriginErrors: true,
  consecutiveLocalOriginFailure: 5,
  enforcingConsecutiveLocalOriginFailure: 100,
  enforcingConsecutive5xx: 0,
  enforcingSuccessRate: 0,
  maxEjectionPercent: 50,
};

/** Outlier detection, for services with more than one endpoint (with one, there is no other to send to). */
const outlierDetection = (record: ServiceRecord) => (record.endpoints.length > 1 ? { outlierDetection: OUTLIER_DETECTION } : {});

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
      ...outlierDetection(record),
    });
  }
  return Cluster.fromPartial({
    name,
    type: Cluster_DiscoveryType.STRICT_DNS,
    connectTimeout: CONNECT_TIMEOUT,
    dnsLookupFamily: Cluster_DnsLookupFamily.V4_PREFERRED,
    loadAssignment: translateLoadAssignment(name, record),
    ...outlierDetection(record),
  });
}
