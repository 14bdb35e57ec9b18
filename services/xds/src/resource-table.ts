// A versioned table of the resources of one type. Changes are staged and applied by commit(), so
// readers only ever see whole commits. Versions are content hashes kept up to date in O(1) per
// changed resource (XOR of member digests), whatever the size of the table.
import { DIGEST_BYTES, digestOf, xorInto, type ResourceSet, type XdsResource } from "./ads/resources.js";
import { encodeAny, ownedField } from "./wire.js";

/** How many commits changedSince() can look back over. */
const CHANGE_LOG_SIZE = 128;
/** How long a removed resource is kept: for streams whose routes may still use it, or whose Envoy still warms a cluster that needs it. */
const RETIRED_TTL_MS = 5 * 60_000;

/**
 * Encodes a resource once: its Any, its DiscoveryResponse field, its version and digest. Every
 * resource's bytes contain its name, so one hash of them is both its version and its digest.
 */
export function makeResource(typeUrl: string, name: string, bytes: Uint8Array): XdsResource {
  return resourceFromAny(name, digestOf(bytes), encodeAny(typeUrl, bytes));
}

/** A resource whose digest is given (one assembled from parts whose hashes are known). */
export function resourceFromAny(name: string, digest: Buffer, any: Buffer): XdsResource {
  const sotwField = ownedField(2, any);
  return {
    name,
    version: digest.toString("hex"),
    digest,
    sotwField,
    any: sotwField.subarray(sotwField.length - any.length),
  };
}

interface LogEntry {
  from: string;
  to: string;
  changed: readonly string[];
}

interface Retired {
  resource: XdsResource;
  serial: number;
  at: number;
  /** Commit serial since which it was in the set (see #addedAt). */
  addedAt: number;
}

export class ResourceTable implements ResourceSet {
  readonly typeUrl: string;
  #current = new Map<string, XdsResource>();
  #staged = new Map<string, XdsResource | null>();
  #accumulator = Buffer.alloc(DIGEST_BYTES);
  #version: string;
  #serial = 0;
  #namesSerial = 0;
  #log: LogEntry[] = [];
  #retired = new Map<string, Retired>();
  /**
   * Commit serial at which each resource joined the set; one removed and added again within the
   * retired TTL keeps its first, as routes built meanwhile may refer to it.
   */
  #addedAt = new Map<string, number>();
  /** The latest commit serial of a removal no longer in #retired (its TTL passed). */
  #forgottenThrough = 0;
  #changedCache = new Map<string, ReadonlySet<string> | undefined>();

  constructor(typeUrl: string) {
    this.typeUrl = typeUrl;
    this.#version = this.#accumulator.toString("hex");
  }

  get version(): string {
    return this.#version;
  }
  get serial(): number {
    return this.#serial;
  }
  get namesSerial(): number {
    return this.#namesSerial;
  }
  get size(): number {
    return this.#current.size;
  }
  get(name: string): XdsResource | undefined {
    return this.#current.get(name);
  }
  has(name: string): boolean {
    return this.#current.has(name);
  }
  values(): IterableIterator<XdsResource> {
    return this.#current.values();
  }

  /** Stages an upsert; a resource identical to the committed one is a no-op at commit. */
  stage(resource: XdsResource): void {
    this.#staged.set(resource.name, resource);
  }

  stageRemoval(name: string): void {
    this.#staged.set(name, null);
  }

  /** Applies the staged changes as commit `serial`; returns whether the set changed. */
  commit(serial: number, now: number): boolean {
    const changed: string[] = [];
    let namesChanged = false;
    for (const [name, next] of this.#staged) {
      const previous = this.#current.get(name);
      if (next?.version === previous?.version) continue;
      if (previous) xorInto(this.#accumulator, previous.digest);
      if (next) {
        xorInto(this.#accumulator, next.digest);
        this.#current.set(name, next);
        if (!previous) {
          this.#addedAt.set(name, this.#retired.get(name)?.addedAt ?? serial);
          this.#retired.delete(name);
          namesChanged = true;
        }
      } else if (previous) {
        this.#current.delete(name);
        this.#retired.set(name, { resource: previous, serial, at: now, addedAt: this.#addedAt.get(name) ?? 0 });
        this.#addedAt.delete(name);
        namesChanged = true;
      }
      changed.push(name);
    }
    this.#staged.clear();
    this.#pruneRetired(now);
    if (changed.length === 0) return false;
    const from = this.#version;
    this.#version = this.#accumulator.toString("hex");
    this.#serial = serial;
    if (namesChanged) this.#namesSerial = serial;
    this.#log.push({ from, to: this.#version, changed });
    if (this.#log.length > CHANGE_LOG_SIZE) this.#log.shift();
    this.#changedCache.clear();
    return true;
  }

  changedSince(version: string): ReadonlySet<string> | undefined {
    if (version === this.#version) return new Set();
    if (this.#changedCache.has(version)) return this.#changedCache.get(version);
    let result: Set<string> | undefined;
    const names = new Set<string>();
    // Walk back from the newest commit to the most recent one that started at `version`.
    for (let i = this.#log.length - 1; i >= 0; i--) {
      const entry = this.#log[i]!;
      for (const name of entry.changed) names.add(name);
      if (entry.from === version) {
        result = names;
        break;
      }
    }
    this.#changedCache.set(version, result);
    return result;
  }

  retiredSince(serial: number): XdsResource[] {
    const out: XdsResource[] = [];
    for (const retired of this.#retired.values()) if (retired.serial > serial) out.push(retired.resource);
    return out;
  }

  droppedSince(serials: readonly number[]): XdsResource[] {
    const out: XdsResource[] = [];
    for (const retired of this.#retired.values()) {
      if (serials.some((serial) => retired.addedAt <= serial && serial < retired.serial)) out.push(retired.resource);
    }
    return out;
  }

  retired(name: string): XdsResource | undefined {
    return this.#retired.get(name)?.resource;
  }

  removalsKnownSince(serial: number): boolean {
    return serial >= this.#forgottenThrough;
  }

  #pruneRetired(now: number): void {
    for (const [name, retired] of this.#retired) {
      if (now - retired.at <= RETIRED_TTL_MS) continue;
      this.#retired.delete(name);
      this.#forgottenThrough = Math.max(this.#forgottenThrough, retired.serial);
    }
  }
}
