// What the ADS layer serves: named, versioned, pre-encoded resources grouped by type. It knows
// nothing of services, records or NATS; anything that fills ResourceSets can be served.
import { hash } from "node:crypto";

export const CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
export const ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
export const LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener";
export const ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/** Short names for logs and metrics. */
export const TYPE_NAMES: Readonly<Record<string, string>> = {
  [CLUSTER_TYPE]: "CDS",
  [ENDPOINT_TYPE]: "EDS",
  [LISTENER_TYPE]: "LDS",
  [ROUTE_TYPE]: "RDS",
};

/** A type's short name (CDS, EDS, …), or its URL for a type Envoyage does not serve. */
export function typeName(typeUrl: string): string {
  return TYPE_NAMES[typeUrl] ?? typeUrl;
}

export interface XdsResource {
  readonly name: string;
  /** Content hash of the encoded resource: equal versions mean identical bytes, on any replica. */
  readonly version: string;
  /** The version's 16 bytes (a hash of content that includes the name); a set's version is the XOR of its members' digests. */
  readonly digest: Buffer;
  /** The resource as element of `repeated google.protobuf.Any resources = 2` in a DiscoveryResponse. */
  readonly sotwField: Buffer;
  /** The resource as a google.protobuf.Any (a view into sotwField, not a copy). */
  readonly any: Buffer;
}

/** The committed resources of one type. Read-only for streams; changes arrive as commits. */
export interface ResourceSet {
  readonly typeUrl: string;
  /** Content hash of the whole set (XOR of member digests): same set, same version. */
  readonly version: string;
  /** Store-wide commit serial at which this set last changed. */
  readonly serial: number;
  /** Store-wide commit serial at which a name was last added or removed (not just updated). */
  readonly namesSerial: number;
  readonly size: number;
  get(name: string): XdsResource | undefined;
  has(name: string): boolean;
  values(): IterableIterator<XdsResource>;
  /** Names added, updated or removed since the set had `version`; undefined when unknown. */
  changedSince(version: string): ReadonlySet<string> | undefined;
  /** Resources removed at a commit serial greater than `serial` and not re-added since. */
  retiredSince(serial: number): XdsResource[];
  /**
   * Resources removed (and not re-added) since any of these commit serials, that were in the set
   * at that serial: what states of then may refer to.
   */
  droppedSince(serials: readonly number[]): XdsResource[];
  /**
   * A resource removed lately (not re-added), as it was. Envoy may still ask for it: it warms a
   * cluster sent before the cluster's endpoints were removed, and holds everything back until
   * it has them.
   */
  retired(name: string): XdsResource | undefined;
  /** False when a resource removed after commit `serial` is no longer known to retiredSince(). */
  removalsKnownSince(serial: number): boolean;
}

export interface ResourceSource {
  /** False until the whole registry is loaded: streams get nothing before (readiness gate). */
  readonly ready: boolean;
  /** Serial of the latest commit. */
  readonly serial: number;
  resources(typeUrl: string): ResourceSet;
  /** Called when the source becomes ready, then after every commit that changes something. */
  onCommit(listener: () => void): () => void;
}

/** Bytes of a digest: the first 16 of a SHA-256. */
export const DIGEST_BYTES = 16;

/** The digest of a resource's (or a part's) encoded bytes. */
export function digestOf(bytes: Uint8Array): Buffer {
  return hash("sha256", bytes, "buffer").subarray(0, DIGEST_BYTES);
}

/** Adds a digest to a running set version, or takes it out again (XOR is its own inverse). */
export function xorInto(target: Buffer, digest: Buffer): void {
  for (let i = 0; i < DIGEST_BYTES; i++) target[i]! ^= digest[i]!;
}
