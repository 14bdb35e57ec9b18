// The snapshot store: Envoy resources for the servable registry, encoded once per version.
//
// A service change re-translates that service only. Its cluster and endpoints are resources of
// their own; its virtual host is one part of the single route configuration, which is assembled
// by concatenating pre-encoded virtual hosts in name order (the same bytes translateRegistry's
// RouteConfiguration encodes to, which a test checks). Before a commit is published, every
// changed service is validated against the rest (validate.ts); one that fails keeps its previous
// resources and is reported, and the rest of the commit goes through. That includes a virtual
// host that would take the route configuration over its limit: that service is refused, not
// every later route change. A refused service is offered again, as translated, by every commit.
import { Cluster } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import { Listener } from "@envoyage/proto/envoy/config/listener/v3/listener.js";
import { VirtualHost } from "@envoyage/proto/envoy/config/route/v3/route_components.js";
import type { ServiceRecord } from "@envoyage/registry";
import {
  CLUSTER_TYPE,
  ENDPOINT_TYPE,
  LISTENER_TYPE,
  ROUTE_TYPE,
  DIGEST_BYTES,
  digestOf,
  xorInto,
  type ResourceSet,
  type ResourceSource,
  type XdsResource,
} from "./ads/resources.js";
import { makeResource, ResourceTable, resourceFromAny } from "./resource-table.js";
import { LISTENER_NAME, ROUTE_CONFIG_NAME, translateListener, translateService, type TranslateOptions } from "./translate/index.js";
import { MAX_ROUTE_CONFIGURATION_BYTES, validateService } from "./validate.js";
import { encodeAny, ownedField, stringField } from "./wire.js";

interface EncodedVirtualHost {
  name: string;
  /** The virtual host as field 2 of a RouteConfiguration. */
  field: Buffer;
  digest: Buffer;
}

/** One service's resources, encoded. */
interface EncodedService {
  name: string;
  domains: readonly string[];
  /** Clusters its routes point at. */
  routeClusters: readonly string[];
  cluster: XdsResource;
  endpoints: XdsResource | undefined;
  virtualHost: EncodedVirtualHost;
}

/** A service whose change failed validation: it keeps its previous resources. */
export interface Rejection {
  name: string;
  problems: string[];
}

/** What a commit reflects of the bucket. */
export interface CommitMeta {
  /** Bucket revision applied: Envoys holding this commit hold every write up to it. */
  revision: number;
  /** Server time (ms) of the earliest write first included in this commit. */
  firstWriteAt: number | undefined;
}

/** The route configuration's bytes besides its virtual hosts (its name, the Any around it): well under this. */
const ROUTE_CONFIGURATION_OVERHEAD = 1024;

/** How many commits commitMeta() remembers. */
export const COMMIT_HISTORY = 1024;

export interface CommitStats {
  serial: number;
  /** Types whose set changed in this commit. */
  changed: string[];
  durationMs: number;
  rejected: Rejection[];
}

export class SnapshotStore implements ResourceSource {
  readonly #tables = new Map<string, ResourceTable>(
    [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE].map((type) => [type, new ResourceTable(type)]),
  );
  /** Virtual hosts sorted by name, and an index into them. */
  readonly #virtualHosts: EncodedVirtualHost[] = [];
  readonly #virtualHostDigest = Buffer.alloc(DIGEST_BYTES);
  /** Encoded size of the virtual hosts, kept up to date per change. */
  #virtualHostBytes = 0;
  readonly #maxRouteConfigurationBytes: number;
  /** Committed services, and which service each committed domain belongs to. */
  readonly #services = new Map<string, EncodedService>();
  readonly #domainHolders = new Map<string, string>();
  readonly #staged = new Map<string, EncodedService | null>();
  /**
   * Services the last commit refused, translated: offered again with every commit (room freed in
   * the route configuration, or a domain given up, may let one through) until replaced or removed.
   */
  readonly #refused = new Map<string, EncodedService>();
  #routesDirty = true;
  #serial = 0;
  readonly #history = new Map<number, CommitMeta>([[0, { revision: 0, firstWriteAt: undefined }]]);
  #ready = false;
  readonly #listeners = new Set<() => void>();

  constructor(options: TranslateOptions & { maxRouteConfigurationBytes?: number }) {
    this.#maxRouteConfigurationBytes = options.maxRouteConfigurationBytes ?? MAX_ROUTE_CONFIGURATION_BYTES;
    this.#table(LISTENER_TYPE).stage(
      makeResource(LISTENER_TYPE, LISTENER_NAME, Listener.encode(translateListener(options)).finish()),
    );
  }

  get ready(): boolean {
    return this.#ready;
  }

  get serial(): number {
    return this.#serial;
  }

  resources(typeUrl: string): ResourceSet {
    return this.#table(typeUrl);
  }

  onCommit(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stages a servable service (added or changed). */
  setService(name: string, record: ServiceRecord): void {
    this.#refused.delete(name);
    const { cluster, loadAssignment, virtualHost } = translateService(name, record);
    const bytes = VirtualHost.encode(virtualHost).finish();
    this.#staged.set(name, {
      name,
      domains: virtualHost.domains,
      routeClusters: virtualHost.routes.flatMap((route) => (route.route?.cluster ? [route.route.cluster] : [])),
      cluster: makeResource(CLUSTER_TYPE, name, Cluster.encode(cluster).finish()),
      endpoints: loadAssignment && makeResource(ENDPOINT_TYPE, name, ClusterLoadAssignment.encode(loadAssignment).finish()),
      virtualHost: { name, field: ownedField(2, bytes), digest: digestOf(bytes) },
    });
  }

  /** Stages the removal of a service that is no longer servable. */
  removeService(name: string): void {
    this.#refused.delete(name);
    this.#staged.set(name, null);
  }

  /** Opens the readiness gate: from now on streams are served. */
  markReady(): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#notify();
  }

  /**
   * The bucket was created again: the revisions commits reflect so far are the old bucket's,
   * which say nothing of the new one (its revisions start over). Envoys holding those commits
   * are synced to no revision of it until they hold a commit made from it.
   */
  forgetRevisions(): void {
    for (const meta of this.#history.values()) meta.revision = 0;
  }

  /** What commit `serial` reflects, while it is among the last 1,024. */
  commitMeta(serial: number): CommitMeta | undefined {
    return this.#history.get(serial);
  }

  /** Applies everything staged as one commit and tells the streams, if anything changed. */
  commit(meta: CommitMeta = { revision: 0, firstWriteAt: undefined }): CommitStats | undefined {
    const started = performance.now();
    const rejected = this.#applyStaged();
    if (this.#routesDirty) {
      this.#table(ROUTE_TYPE).stage(this.#assembleRouteConfiguration());
      this.#routesDirty = false;
    }
    const serial = this.#serial + 1;
    const now = Date.now();
    const changed: string[] = [];
    for (const table of this.#tables.values()) if (table.commit(serial, now)) changed.push(table.typeUrl);
    if (changed.length === 0) {
      // Same content: whoever holds the current commit also holds these writes.
      this.#history.get(this.#serial)!.revision = Math.max(this.#history.get(this.#serial)!.revision, meta.revision);
      return rejected.length > 0 ? { serial: this.#serial, changed, durationMs: performance.now() - started, rejected } : undefined;
    }
    this.#serial = serial;
    this.#history.set(serial, { ...meta });
    this.#history.delete(serial - COMMIT_HISTORY);
    const stats = { serial, changed, durationMs: performance.now() - started, rejected };
    if (this.#ready) this.#notify();
    return stats;
  }

  /** Validates the staged services against the rest and moves the valid ones into the tables. */
  #applyStaged(): Rejection[] {
    const rejected = new Map<string, string[]>();
    // A rejected service keeps its previous resources, domains included, which another staged
    // service may have been given in the same pass: validate again until a pass rejects nothing.
    for (const [name, service] of this.#refused) this.#staged.set(name, service);
    this.#refused.clear();
    let again = true;
    while (again) again = this.#rejectOnePass(rejected);
    for (const name of rejected.keys()) {
      this.#refused.set(name, this.#staged.get(name)!);
      this.#staged.delete(name);
    }
    for (const [name, next] of this.#staged) {
      const previous = this.#services.get(name);
      // Only what it still holds: a service staged before it may have taken one of its domains.
      for (const domain of previous?.domains ?? []) if (this.#domainHolders.get(domain) === name) this.#domainHolders.delete(domain);
      if (next) {
        this.#table(CLUSTER_TYPE).stage(next.cluster);
        if (next.endpoints) this.#table(ENDPOINT_TYPE).stage(next.endpoints);
        else this.#table(ENDPOINT_TYPE).stageRemoval(name);
        this.#putVirtualHost(next.virtualHost);
        for (const domain of next.domains) this.#domainHolders.set(domain, name);
        this.#services.set(name, next);
      } else {
        this.#table(CLUSTER_TYPE).stageRemoval(name);
        this.#table(ENDPOINT_TYPE).stageRemoval(name);
        this.#removeVirtualHost(name);
        this.#services.delete(name);
      }
    }
    this.#staged.clear();
    return [...rejected].map(([name, problems]) => ({ name, problems }));
  }

  /**
   * Validates the staged services not rejected yet, given that rejected ones keep what they had;
   * adds the ones that fail to `rejected`. Returns whether it rejected any.
   */
  #rejectOnePass(rejected: Map<string, string[]>): boolean {
    // Who holds each domain once this commit applies: staged services drop their old domains.
    const holders = new Map<string, string | undefined>();
    for (const name of this.#staged.keys()) {
      for (const domain of this.#services.get(name)?.domains ?? []) holders.set(domain, rejected.has(name) ? name : undefined);
    }
    const holderOf = (domain: string) => (holders.has(domain) ? holders.get(domain) : this.#domainHolders.get(domain));
    const clusterExists = (name: string) =>
      this.#staged.has(name) && !rejected.has(name) ? this.#staged.get(name) !== null : this.#services.has(name);
    // Route configuration size: removals and shrinking virtual hosts free their room first,
    // whatever their order in the commit (a service rejected meanwhile is re-checked in the next
    // pass, without its credit); a growing one counts its growth, so a rejected one keeps its
    // room and the total never passes the limit.
    let routeBytes = ROUTE_CONFIGURATION_OVERHEAD + this.#virtualHostBytes;
    for (const [name, next] of this.#staged) {
      if (rejected.has(name)) continue;
      routeBytes += Math.min(0, (next?.virtualHost.field.length ?? 0) - this.#virtualHostSize(name));
    }
    let rejectedAny = false;
    for (const [name, next] of this.#staged) {
      if (!next || rejected.has(name)) continue;
      const sizes = [next.cluster.any.length, next.endpoints?.any.length ?? 0, next.virtualHost.field.length];
      const problems = next.routeClusters.flatMap((cluster) =>
        validateService({ name, domains: next.domains, routeCluster: cluster, sizes }, holderOf, clusterExists),
      );
      const growth = Math.max(0, next.virtualHost.field.length - this.#virtualHostSize(name));
      if (routeBytes + growth > this.#maxRouteConfigurationBytes) {
        problems.push(`its virtual host would take the route configuration to ${routeBytes + growth} bytes, over ${this.#maxRouteConfigurationBytes}`);
      }
      if (problems.length > 0) {
        rejected.set(name, problems);
        rejectedAny = true;
        for (const domain of this.#services.get(name)?.domains ?? []) holders.set(domain, name); // kept as before
      } else {
        routeBytes += growth;
        for (const domain of next.domains) holders.set(domain, name);
      }
    }
    return rejectedAny;
  }

  #virtualHostSize(name: string): number {
    return this.#services.get(name)?.virtualHost.field.length ?? 0;
  }

  #removeVirtualHost(name: string): void {
    const index = this.#indexOf(name);
    if (this.#virtualHosts[index]?.name === name) {
      xorInto(this.#virtualHostDigest, this.#virtualHosts[index].digest);
      this.#virtualHostBytes -= this.#virtualHosts[index].field.length;
      this.#virtualHosts.splice(index, 1);
      this.#routesDirty = true;
    }
  }

  #putVirtualHost(entry: EncodedVirtualHost): void {
    const index = this.#indexOf(entry.name);
    const existing = this.#virtualHosts[index];
    if (existing?.name === entry.name) {
      if (existing.digest.equals(entry.digest)) return;
      xorInto(this.#virtualHostDigest, existing.digest);
      this.#virtualHostBytes -= existing.field.length;
      this.#virtualHosts[index] = entry;
    } else {
      this.#virtualHosts.splice(index, 0, entry);
    }
    xorInto(this.#virtualHostDigest, entry.digest);
    this.#virtualHostBytes += entry.field.length;
    this.#routesDirty = true;
  }

  /** Binary search: the index of `name`, or where it would be inserted. */
  #indexOf(name: string): number {
    let low = 0;
    let high = this.#virtualHosts.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#virtualHosts[middle]!.name < name) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  #assembleRouteConfiguration() {
    const bytes = Buffer.concat([stringField(1, ROUTE_CONFIG_NAME), ...this.#virtualHosts.map((v) => v.field)]);
    // The version is the XOR of the virtual hosts' hashes, kept up to date per change.
    return resourceFromAny(ROUTE_CONFIG_NAME, Buffer.from(this.#virtualHostDigest), encodeAny(ROUTE_TYPE, bytes));
  }

  #table(typeUrl: string): ResourceTable {
    const table = this.#tables.get(typeUrl);
    if (!table) throw new Error(`no resources of type ${typeUrl}`);
    return table;
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}
