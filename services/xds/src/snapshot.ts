// The snapshot store: Envoy resources for the servable registry, encoded once per version.
//
// A service change re-translates that service only. Its cluster and endpoints are resources of
// their own; its virtual host is one part of the single route configuration, which is assembled
// by concatenating pre-encoded virtual hosts in name order (the same bytes translateRegistry's
// RouteConfiguration encodes to, which a test checks).
import { hash } from "node:crypto";
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
  type ResourceSet,
  type ResourceSource,
} from "./ads/resources.js";
import { makeResource, ResourceTable, resourceFromAny, xorInto } from "./resource-table.js";
import { LISTENER_NAME, ROUTE_CONFIG_NAME, translateListener, translateService, type TranslateOptions } from "./translate/index.js";
import { encodeAny, lengthDelimitedField, stringField } from "./wire.js";

interface EncodedVirtualHost {
  name: string;
  /** The virtual host as field 2 of a RouteConfiguration. */
  field: Buffer;
  digest: Buffer;
}

/** What a commit reflects of the bucket. */
export interface CommitMeta {
  /** Bucket revision applied: Envoys holding this commit hold every write up to it. */
  revision: number;
  /** Server time (ms) of the earliest write first included in this commit. */
  firstWriteAt: number | undefined;
}

/** How many commits commitMeta() remembers. */
const COMMIT_HISTORY = 1024;

export interface CommitStats {
  serial: number;
  /** Types whose set changed in this commit. */
  changed: string[];
  durationMs: number;
}

export class SnapshotStore implements ResourceSource {
  readonly #tables = new Map<string, ResourceTable>(
    [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE].map((type) => [type, new ResourceTable(type)]),
  );
  /** Virtual hosts sorted by name, and an index into them. */
  readonly #virtualHosts: EncodedVirtualHost[] = [];
  readonly #virtualHostDigest = Buffer.alloc(16);
  #routesDirty = true;
  #serial = 0;
  readonly #history = new Map<number, CommitMeta>([[0, { revision: 0, firstWriteAt: undefined }]]);
  #ready = false;
  readonly #listeners = new Set<() => void>();

  constructor(options: TranslateOptions) {
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
    const { cluster, loadAssignment, virtualHost } = translateService(name, record);
    this.#table(CLUSTER_TYPE).stage(makeResource(CLUSTER_TYPE, name, Cluster.encode(cluster).finish()));
    if (loadAssignment) {
      this.#table(ENDPOINT_TYPE).stage(
        makeResource(ENDPOINT_TYPE, name, ClusterLoadAssignment.encode(loadAssignment).finish()),
      );
    } else {
      this.#table(ENDPOINT_TYPE).stageRemoval(name);
    }
    const bytes = VirtualHost.encode(virtualHost).finish();
    this.#putVirtualHost({ name, field: lengthDelimitedField(2, bytes), digest: digestOf(bytes) });
  }

  /** Stages the removal of a service that is no longer servable. */
  removeService(name: string): void {
    this.#table(CLUSTER_TYPE).stageRemoval(name);
    this.#table(ENDPOINT_TYPE).stageRemoval(name);
    const index = this.#indexOf(name);
    if (this.#virtualHosts[index]?.name === name) {
      xorInto(this.#virtualHostDigest, this.#virtualHosts[index].digest);
      this.#virtualHosts.splice(index, 1);
      this.#routesDirty = true;
    }
  }

  /** Opens the readiness gate: from now on streams are served. */
  markReady(): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#notify();
  }

  /** What commit `serial` reflects, while it is among the last 1,024. */
  commitMeta(serial: number): CommitMeta | undefined {
    return this.#history.get(serial);
  }

  /** Applies everything staged as one commit and tells the streams, if anything changed. */
  commit(meta: CommitMeta = { revision: 0, firstWriteAt: undefined }): CommitStats | undefined {
    const started = performance.now();
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
      return undefined;
    }
    this.#serial = serial;
    this.#history.set(serial, { ...meta });
    this.#history.delete(serial - COMMIT_HISTORY);
    const stats = { serial, changed, durationMs: performance.now() - started };
    if (this.#ready) this.#notify();
    return stats;
  }

  #putVirtualHost(entry: EncodedVirtualHost): void {
    const index = this.#indexOf(entry.name);
    const existing = this.#virtualHosts[index];
    if (existing?.name === entry.name) {
      if (existing.digest.equals(entry.digest)) return;
      xorInto(this.#virtualHostDigest, existing.digest);
      this.#virtualHosts[index] = entry;
    } else {
      this.#virtualHosts.splice(index, 0, entry);
    }
    xorInto(this.#virtualHostDigest, entry.digest);
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
    // The version is a hash of the virtual hosts' hashes, kept up to date per change.
    return resourceFromAny(ROUTE_CONFIG_NAME, this.#virtualHostDigest.toString("hex"), encodeAny(ROUTE_TYPE, bytes));
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

function digestOf(bytes: Uint8Array): Buffer {
  return hash("sha256", bytes, "buffer").subarray(0, 16);
}
