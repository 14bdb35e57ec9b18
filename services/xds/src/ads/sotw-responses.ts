// State-of-the-world DiscoveryResponses, assembled from pre-encoded resources and shared: every
// stream that needs the same content at the same version gets the same Buffer, nonce included.
// A nonce only has to be unique within a stream, and a stream never receives one body twice.
import { randomBytes } from "node:crypto";
import type { ResourceSet, XdsResource } from "./resources.js";
import { stringField } from "../wire.js";

export interface ResponseBody {
  readonly bytes: Buffer;
  readonly nonce: string;
  readonly version: string;
  readonly count: number;
}

interface TypeCache {
  version: string;
  bodies: Map<string, ResponseBody>;
}

const FULL = "*";

export class SotwResponses {
  readonly #caches = new Map<string, TypeCache>();
  /** A per-process prefix keeps nonces distinct from those of a replica Envoy used before. */
  readonly #noncePrefix = randomBytes(3).toString("hex");
  #nextNonce = 0;

  /** The whole set, for wildcard types (CDS, LDS). */
  full(set: ResourceSet): ResponseBody {
    return this.#cached(set, FULL, () => [...set.values()]);
  }

  /**
   * Named resources of the set at its current version. `key` must identify how `select` picks
   * them, so that streams in the same state share the body.
   */
  named(set: ResourceSet, key: string, select: () => XdsResource[]): ResponseBody {
    return this.#cached(set, key, select);
  }

  /** A one-off body (e.g. clusters kept alive for one stream's older routes); not cached. */
  build(typeUrl: string, version: string, resources: XdsResource[]): ResponseBody {
    const nonce = this.#nonce();
    const bytes = Buffer.concat([
      stringField(1, version),
      ...resources.map((r) => r.sotwField),
      stringField(4, typeUrl),
      stringField(5, nonce),
    ]);
    return { bytes, nonce, version, count: resources.length };
  }

  #cached(set: ResourceSet, key: string, select: () => XdsResource[]): ResponseBody {
    let cache = this.#caches.get(set.typeUrl);
    if (!cache || cache.version !== set.version) {
      cache = { version: set.version, bodies: new Map() };
      this.#caches.set(set.typeUrl, cache);
    }
    let body = cache.bodies.get(key);
    if (!body) {
      body = this.build(set.typeUrl, set.version, select());
      cache.bodies.set(key, body);
    }
    return body;
  }

  #nonce(): string {
    return `${this.#noncePrefix}-${(this.#nextNonce++).toString(36)}`;
  }
}
