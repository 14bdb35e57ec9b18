// What a replica reports about itself (GET /status on XDS_HTTP_PORT): the bucket revision its
// resources reflect (the committed one, so replicas reporting the same revision report the same
// versions), the version and count of each resource type, rejected records, ignored keys, and its
// streams.
import { PUSH_ORDER } from "./ads/stream.js";
import { TYPE_NAMES, type ResourceSource } from "./ads/resources.js";
import type { AdsServer } from "./ads/server.js";
import type { RejectedService, ReplicaReport } from "@envoyage/registry";
import type { IgnoredKey } from "./ignored-keys.js";
import type { Replica } from "./replica.js";

export interface ReplicaStatus {
  replica: string;
  ready: boolean;
  revision: number;
  services: { served: number; rejected: Record<string, RejectedService>; failedValidation: Record<string, string[]> };
  /** Bucket keys the registry does not take (ignored-keys.ts): how many, and the first of them. */
  ignoredKeys: { count: number; keys: Record<string, IgnoredKey> };
  resources: Record<string, { version: string; count: number }>;
  streams: { sotw: number; delta: number };
}

export function replicaStatus(replicaId: string, replica: Replica, source: ResourceSource, ads: AdsServer): ReplicaStatus {
  const { ready, revision } = replicaReport(replicaId, replica);
  return {
    replica: replicaId,
    ready,
    revision,
    services: { served: replica.registry.servedCount, rejected: rejectedServices(replica), failedValidation: Object.fromEntries(replica.failedValidation) },
    ignoredKeys: { count: replica.ignoredKeys.count, keys: replica.ignoredKeys.listed() },
    resources: Object.fromEntries(
      PUSH_ORDER.map((type) => {
        const set = source.resources(type);
        return [TYPE_NAMES[type]!, { version: set.version, count: set.size }];
      }),
    ),
    streams: ads.streamCounts(),
  };
}

/**
 * The report the replica publishes to the status bucket (status-publisher.ts): only what the API
 * reads, not the listing of ignored keys, which sorts them all. Rejected services go in pages of
 * their own (rejectedServicesByCommit).
 */
export function replicaReport(replicaId: string, replica: Replica): Omit<ReplicaReport, "updatedAt"> {
  return { replica: replicaId, ready: replica.ready, revision: replica.committedRevision };
}

/**
 * rejectedServices(replica), the same object until the replica commits again (then built anew
 * when next asked): the status publisher asks every half second, rebuilding them each time was a
 * tenth of an idle replica's CPU with thousands of bad records, and an unchanged object is not
 * written again.
 */
export function rejectedServicesByCommit(replica: Replica): () => Record<string, RejectedService> {
  let commits = -1;
  let services: Record<string, RejectedService> = {};
  return () => {
    if (replica.commits !== commits) {
      commits = replica.commits;
      services = rejectedServices(replica);
    }
    return services;
  };
}

/** The services whose latest record is not served, by name: its state and why. */
function rejectedServices(replica: Replica): Record<string, RejectedService> {
  const out: Record<string, RejectedService> = {};
  for (const name of replica.registry.rejected()) {
    const status = replica.registry.status(name);
    if (status === undefined || status.state === "serving") continue;
    // The snapshot refused what the registry would serve: Envoys hold an older revision, unknown here.
    const servingRevision = replica.failedValidation.has(name) ? undefined : (status.servingRevision ?? null);
    if (status.state === "invalid") out[name] = { state: "invalid", revision: status.revision, problem: status.problem, servingRevision };
    else out[name] = { state: "conflict", revision: status.revision, conflicts: status.conflicts, servingRevision };
  }
  // Valid records the snapshot refused (validate.ts): Envoys keep the service's previous config,
  // whose revision the snapshot does not keep (servingRevision left out).
  for (const [name, problems] of replica.failedValidation) {
    const revision = replica.registry.served().get(name)?.revision;
    if (revision !== undefined) out[name] ??= { state: "invalid", revision, problem: `not pushed to Envoy: ${problems.join("; ")}` };
  }
  return out;
}
