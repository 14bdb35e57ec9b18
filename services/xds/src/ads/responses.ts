// Discovery responses assembled from pre-encoded resources, and shared: every stream that needs
// the same content at the same version gets the same Buffer, nonce included. A nonce only has to
// be unique within a stream, and a stream is never sent a body twice.
import { randomBytes } from "node:crypto";
import type { ResourceSet, XdsResource } from "./resources.js";
import { lengthDelimitedField, ownedField, stringField } from "../wire.js";

export interface ResponseBody {
  readonly bytes: Buffer;
  readonly nonce: string;
  readonly version: string;
  /** Resources carried (updated ones, for delta). */
  readonly count: number;
  /** Delta: names removed. */
  readonly removed: number;
}

interface TypeCache {
  version: string;
  bodies: Map<string, ResponseBody>;
  bytes: number;
}

/** The nonces a stream was sent lately: its last, and earlier ones at the version of the last. */
export interface SentNonces {
  readonly lastNonce: string | undefined;
  readonly earlierNonces: ReadonlySet<string> | undefined;
}

/**
 * Bounds on the bodies kept per type between commits. A fleet in one state needs a handful; a
 * stream cycling through ever new subscriptions would otherwise add a body per request until the
 * next change of the type. Past a bound the cache starts over (the newest body is always kept).
 */
const MAX_CACHED_BODIES = 1024;
const MAX_CACHED_BYTES = 64 * 1024 * 1024;

/** Builds response bodies and caches them per resource-set version. */
export class ResponseCache {
  readonly #caches = new Map<string, TypeCache>();
  /** A per-process prefix keeps nonces distinct from those of a replica Envoy used before. */
  readonly #noncePrefix = randomBytes(3).toString("hex");
  #nextNonce = 0;

  /**
   * The body `build` makes for `key` at the set's current version; `key` must identify
   * everything `build` depends on besides that version. A stream whose state went back and
   * forth (a name unsubscribed and subscribed again, twice) needs a body it was sent before once
   * more: it gets one of its own, under a new nonce.
   */
  cached(set: ResourceSet, key: string, build: (nonce: string) => ResponseBody, sent: SentNonces): ResponseBody {
    let cache = this.#caches.get(set.typeUrl);
    if (!cache || cache.version !== set.version) {
      cache = { version: set.version, bodies: new Map(), bytes: 0 };
      this.#caches.set(set.typeUrl, cache);
    }
    let body = cache.bodies.get(key);
    if (body && (body.nonce === sent.lastNonce || sent.earlierNonces?.has(body.nonce))) return build(this.nonce());
    if (!body) {
      body = build(this.nonce());
      if (cache.bodies.size >= MAX_CACHED_BODIES || cache.bytes + body.bytes.length > MAX_CACHED_BYTES) {
        cache.bodies.clear();
        cache.bytes = 0;
      }
      cache.bodies.set(key, body);
      cache.bytes += body.bytes.length;
    }
    return body;
  }

  nonce(): string {
    return `${this.#noncePrefix}-${(this.#nextNonce++).toString(36)}`;
  }
}

/** DiscoveryResponse: version_info = 1, resources = 2, type_url = 4, nonce = 5. */
export function encodeSotw(typeUrl: string, version: string, resources: readonly XdsResource[], nonce: string): ResponseBody {
  const bytes = Buffer.concat([stringField(1, version), ...resources.map((r) => r.sotwField), stringField(4, typeUrl), stringField(5, nonce)]);
  return { bytes, nonce, version, count: resources.length, removed: 0 };
}

const deltaFields = new WeakMap<XdsResource, Buffer>();

/** A resource as element of DeltaDiscoveryResponse.resources: Resource{version = 1, resource = 2, name = 3}. */
function deltaField(resource: XdsResource): Buffer {
  let field = deltaFields.get(resource);
  if (!field) {
    field = ownedField(
      2,
      Buffer.concat([stringField(1, resource.version), lengthDelimitedField(2, resource.any), stringField(3, resource.name)]),
    );
    deltaFields.set(resource, field);
  }
  return field;
}

/** DeltaDiscoveryResponse: system_version_info = 1, resources = 2, type_url = 4, nonce = 5, removed_resources = 6. */
export function encodeDelta(
  typeUrl: string,
  version: string,
  resources: readonly XdsResource[],
  removed: readonly string[],
  nonce: string,
): ResponseBody {
  const bytes = Buffer.concat([
    stringField(1, version),
    ...resources.map(deltaField),
    stringField(4, typeUrl),
    stringField(5, nonce),
    ...removed.map((name) => stringField(6, name)),
  ]);
  return { bytes, nonce, version, count: resources.length, removed: removed.length };
}
