// The pre-push validator: checks of a service's encoded resources against the rest of the
// configuration, before a commit is published. The registry already keeps domains unique, so a
// domain failure here means a bug upstream; size limits are the records' own. Either is caught
// before Envoy would reject the whole update.
import { MAX_DOMAINS } from "@envoyage/registry";

/** Envoy takes larger resources, but nothing Envoyage generates legitimately comes close. */
const MAX_RESOURCE_BYTES = 1024 * 1024;
/** The one route configuration carries every virtual host; keep it well under gRPC limits. */
export const MAX_ROUTE_CONFIGURATION_BYTES = 64 * 1024 * 1024;
/** Envoy's stats and admin output stay readable with names of this size. */
const MAX_NAME_LENGTH = 63;

export interface StagedService {
  name: string;
  domains: readonly string[];
  /** Cluster the service's routes point at. */
  routeCluster: string;
  /** Encoded sizes of its cluster, endpoints (if any) and virtual host. */
  sizes: readonly number[];
}

/**
 * Problems with `service` given which service holds each domain once the commit is applied
 * (`holderOf`) and whether its route's cluster will exist (`clusterExists`).
 */
export function validateService(
  service: StagedService,
  holderOf: (domain: string) => string | undefined,
  clusterExists: (name: string) => boolean,
): string[] {
  const problems: string[] = [];
  if (service.name.length === 0 || service.name.length > MAX_NAME_LENGTH) problems.push(`name "${service.name}" is not 1 to ${MAX_NAME_LENGTH} characters`);
  if (service.domains.length === 0 || service.domains.length > MAX_DOMAINS) problems.push(`has ${service.domains.length} domains`);
  for (const domain of service.domains) {
    const holder = holderOf(domain);
    if (holder !== undefined && holder !== service.name) problems.push(`domain ${domain} is already in virtual host ${holder}`);
  }
  if (!clusterExists(service.routeCluster)) problems.push(`its route points at cluster ${service.routeCluster}, which does not exist`);
  for (const size of service.sizes) {
    if (size > MAX_RESOURCE_BYTES) problems.push(`a resource of ${size} bytes exceeds ${MAX_RESOURCE_BYTES}`);
  }
  return problems;
}
