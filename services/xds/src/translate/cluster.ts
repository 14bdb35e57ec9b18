// One cluster per service, named after it. IP endpoints come by EDS, so switching upstreams is an
// endpoint update; Envoy cannot take a hostname in EDS, so a service with any hostname endpoint
// gets a STRICT_DNS cluster carrying its endpoints inline.
import { Cluster, Cluster_DiscoveryType, Cluster_DnsLookupFamily } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ApiVersion } from "@envoyage/proto/envoy/config/core/v3/config_source.js";
import { isIpLiteral, type ServiceRecord } from "@envoyage/registry/record";
import { translateLoadAssignment } from "./endpoint.js";

const CONNECT_TIMEOUT = { seconds: 1, nanos: 0 };

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
    });
  }
  return Cluster.fromPartial({
    name,
    type: Cluster_DiscoveryType.STRICT_DNS,
    connectTimeout: CONNECT_TIMEOUT,
    dnsLookupFamily: Cluster_DnsLookupFamily.V4_PREFERRED,
    loadAssignment: translateLoadAssignment(name, record),
  });
}
