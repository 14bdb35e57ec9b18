import { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import type { ServiceRecord } from "@envoyage/registry/record";

/** The endpoints of a service's cluster, in the order the record lists them. */
export function translateLoadAssignment(name: string, record: ServiceRecord): ClusterLoadAssignment {
  return ClusterLoadAssignment.fromPartial({
    clusterName: name,
    endpoints: [
      {
        lbEndpoints: record.endpoints.map((endpoint) => ({
          endpoint: { address: { socketAddress: { address: endpoint.address, portValue: endpoint.port } } },
        })),
      },
    ],
  });
}
