// The API's view of sync status: it follows the status bucket with a KV watch, so answering
// GET /v1/envoys or a service's status costs no NATS round trip. Entries are written by the
// replicas (services/xds/src/status-publisher.ts): each replica's report and its Envoys in pages.
// They count only while fresh: an entry not refreshed within the bucket's TTL belongs to a
// replica that is gone. Keys are the replica id in base64url: `replicas.<id>`, and
// `envoys.<id>.<page>` / `rejected.<id>.<page>` for its pages.
import {
  BucketWatcher,
  decodeEnvoyPage,
  decodeRejectedPage,
  decodeReplicaReport,
  STATUS_TTL_MS,
  type BucketEntry,
  type BucketWatcherOptions,
  type EnvoyReport,
  type RejectedService,
  type ReplicaReport,
} from "@envoyage/registry";

interface Seen<T> {
  value: T;
  /** Server time of the write. */
  at: number;
}

export type EnvoySyncState = "SYNCED" | "STALE" | "NACKED" | "DISCONNECTED";

export interface EnvoyStatus extends EnvoyReport {
  status: EnvoySyncState;
  /** Streams open with this node id, on every replica: more than one when Envoys share the id. */
  streams: number;
}

export interface ServiceSyncStatus {
  state: "serving" | "invalid" | "conflict" | "pending";
  problem?: string;
  conflicts?: { domain: string; heldBy: string }[];
  /** Rejected: the revision Envoys still route instead (the last good one), or null: not routed. */
  servingRevision?: number | null;
  /** Connected Envoys, and how many of them hold this revision of the service. */
  envoys: { connected: number; acked: number };
}

export class StatusView {
  /** Pages of Envoy reports, by key. */
  readonly #envoys = new Map<string, Seen<EnvoyReport[]>>();
  readonly #replicas = new Map<string, Seen<ReplicaReport>>();
  /** Pages of rejected services, by replica id (as in the keys), then by key. */
  readonly #rejected = new Map<string, Map<string, Seen<Map<string, RejectedService>>>>();
  /** When stale rejected pages were last looked for (they are only read for replicas still reporting). */
  #sweptAt = 0;
  readonly #watcher: BucketWatcher;

  constructor(options: Omit<BucketWatcherOptions, "handlers">) {
    this.#watcher = new BucketWatcher({
      ...options,
      handlers: {
        entry: (entry) => this.#apply(entry),
        loaded: () => {},
        recreated: () => {
          this.#envoys.clear();
          this.#replicas.clear();
          this.#rejected.clear();
        },
      },
    });
  }

  start(): Promise<void> {
    return this.#watcher.start();
  }

  stop(): Promise<void> {
    return this.#watcher.stop();
  }

  /** Entries that are not what a replica writes (deleted, or not of that shape) drop out of the view. */
  #apply(entry: BucketEntry): void {
    const at = entry.created.getTime();
    if (entry.key.startsWith("envoys.")) {
      const page = entry.value && decodeEnvoyPage(entry.value);
      if (page) this.#envoys.set(entry.key, { value: page, at });
      else this.#envoys.delete(entry.key);
    } else if (entry.key.startsWith("replicas.")) {
      const report = entry.value && decodeReplicaReport(entry.value);
      if (report) this.#replicas.set(replicaOf(entry.key), { value: report, at });
      else this.#replicas.delete(replicaOf(entry.key));
    } else if (entry.key.startsWith("rejected.")) {
      const page = entry.value && decodeRejectedPage(entry.value);
      const replica = replicaOf(entry.key);
      const pages = this.#rejected.get(replica) ?? new Map<string, Seen<Map<string, RejectedService>>>();
      if (page) pages.set(entry.key, { value: page, at });
      else pages.delete(entry.key);
      if (pages.size > 0) this.#rejected.set(replica, pages);
      else this.#rejected.delete(replica);
    }
  }

  /** One line per Envoy (node id): its freshest stream, preferring a connected one. */
  envoys(bucketRevision: number): EnvoyStatus[] {
    const byNode = new Map<string, { report: EnvoyReport; streams: number }>();
    for (const [, page] of this.#freshEntries(this.#envoys)) {
      for (const report of page) {
        const line = byNode.get(report.node) ?? { report, streams: 0 };
        const best = line.report;
        if ((report.connected && !best.connected) || (report.connected === best.connected && report.updatedAt > best.updatedAt)) line.report = report;
        if (report.connected) line.streams++;
        byNode.set(report.node, line);
      }
    }
    return [...byNode.values()]
      .sort((a, b) => a.report.node.localeCompare(b.report.node))
      .map(({ report, streams }) => ({ ...report, status: syncState(report, bucketRevision), streams }));
  }

  /** The status of `revision` of service `name`, by what the replicas and their Envoys report. */
  serviceStatus(name: string, revision: number, connected = this.connectedRevisions()): ServiceSyncStatus {
    const envoys = { connected: connected.length, acked: connected.filter((synced) => synced !== null && synced >= revision).length };
    let applied = false;
    this.#sweepRejected();
    for (const [id, replica] of this.#freshEntries(this.#replicas)) {
      const rejected = this.#rejectedBy(id, name);
      if (rejected && rejected.revision === revision) {
        const serving = rejected.servingRevision === undefined ? {} : { servingRevision: rejected.servingRevision };
        return rejected.state === "invalid"
          ? { state: "invalid", problem: rejected.problem ?? "invalid", ...serving, envoys }
          : { state: "conflict", conflicts: rejected.conflicts ?? [], ...serving, envoys };
      }
      applied ||= replica.ready && replica.revision >= revision;
    }
    return { state: applied ? "serving" : "pending", envoys };
  }

  /**
   * Forgets, once a second at most, the rejected pages of replicas that stopped writing them: a
   * replica that went away (or restarted under another id) would otherwise leave them here.
   */
  #sweepRejected(): void {
    const now = Date.now();
    if (now - this.#sweptAt < 1000) return;
    this.#sweptAt = now;
    const oldest = now - STATUS_TTL_MS;
    for (const [id, pages] of this.#rejected) {
      for (const [key, seen] of pages) if (seen.at < oldest) pages.delete(key);
      if (pages.size === 0) this.#rejected.delete(id);
    }
  }

  /** Why replica `id` does not serve service `name`, if it says so in a fresh page. */
  #rejectedBy(id: string, name: string): RejectedService | undefined {
    const pages = this.#rejected.get(id);
    if (!pages) return undefined;
    for (const [, page] of this.#freshEntries(pages)) {
      const rejected = page.get(name);
      if (rejected) return rejected;
    }
    return undefined;
  }

  /** The revision each connected Envoy holds completely (computed once for many serviceStatus calls). */
  connectedRevisions(): (number | null)[] {
    return this.envoys(0).filter((e) => e.connected).map((e) => e.syncedRevision);
  }

  /**
   * The reports still fresh. A stale one is forgotten: the bucket expires it without a delete
   * marker reaching the watch, and a replica that restarts under a new id (a pod's host name)
   * would otherwise leave its pages here for good. Refreshed, it is delivered again.
   */
  *#freshEntries<T>(map: Map<string, Seen<T>>): Iterable<[string, T]> {
    const oldest = Date.now() - STATUS_TTL_MS;
    for (const [key, seen] of map) {
      if (seen.at >= oldest) yield [key, seen.value];
      else map.delete(key);
    }
  }
}

/** The replica id (base64url, as in the keys) of a status key: `replicas.<id>` or `<kind>.<id>.<page>`. */
function replicaOf(key: string): string {
  return key.split(".", 2)[1]!;
}

function syncState(report: EnvoyReport, bucketRevision: number): EnvoySyncState {
  if (!report.connected) return "DISCONNECTED";
  if (Object.values(report.types).some((type) => type.nacked)) return "NACKED";
  return report.syncedRevision !== null && report.syncedRevision >= bucketRevision ? "SYNCED" : "STALE";
}
