// Delta (incremental) xDS: every response carries only the resources that changed, each with its
// own version, and the names removed. A reconnecting Envoy says which versions it holds
// (initial_resource_versions) and gets only what differs.
//
// Removals are sent for clusters and listeners only. Endpoints and routes go away when the
// cluster or listener that needs them does (Envoy then unsubscribes); removing them earlier would
// empty a cluster that routes still use during make-before-break.
import type { DeltaDiscoveryRequest } from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";
import type { ResourceSet, XdsResource } from "./resources.js";
import { encodeDelta, type ResponseBody, type ResponseCache } from "./responses.js";
import { START_OVER, WILDCARD_TYPES, type Delivery, type Protocol, type ResponseInput, type StreamRequest } from "./stream.js";
import type { SubscriptionPool } from "./subscriptions.js";

export function deltaRequest(request: DeltaDiscoveryRequest, subscriptions: SubscriptionPool): StreamRequest {
  const subscribe = request.resourceNamesSubscribe;
  const unsubscribe = request.resourceNamesUnsubscribe;
  const initialVersions = Object.entries(request.initialResourceVersions); // a first request's only: not an ACK's
  return {
    typeUrl: request.typeUrl,
    nodeId: request.node?.id,
    nonce: request.responseNonce,
    error: request.errorDetail ? request.errorDetail.message || "(no detail)" : undefined,
    subscribe:
      WILDCARD_TYPES.has(request.typeUrl) || (subscribe.length === 0 && unsubscribe.length === 0)
        ? undefined
        : (current) => subscriptions.change(current, subscribe, unsubscribe),
    initialVersions: initialVersions.length > 0 ? new Map(initialVersions) : undefined,
    unsubscribed: unsubscribe.length > 0 ? unsubscribe : undefined,
  };
}

interface Change {
  updated: XdsResource[];
  removed: string[];
}

export class DeltaProtocol implements Protocol {
  readonly name = "delta";
  readonly #cache: ResponseCache;

  constructor(cache: ResponseCache) {
    this.#cache = cache;
  }

  respond({ set, state, desired }: ResponseInput): ResponseBody | undefined | typeof START_OVER {
    if (!state.envoyHas && removalsUnknown(set, desired, state.acked)) return START_OVER;
    let body: ResponseBody;
    const again = state.forgotten ? resubscribed(set, desired, state.forgotten) : [];
    if (state.envoyHas) {
      body = encodeChange(set, desired, fromEnvoyState(set, desired, state.envoyHas), this.#cache.nonce());
    } else if (again.length > 0) {
      // Names Envoy dropped and asks for again (TypeState.forgotten): a body of the stream's own.
      const change = sinceAcked(set, desired, state.acked);
      const listed = new Set(change.updated.map((resource) => resource.name));
      change.updated.push(...again.filter((resource) => !listed.has(resource.name)));
      body = encodeChange(set, desired, change, this.#cache.nonce());
    } else {
      const acked = state.acked;
      const key = `${desired.version}|${desired.subscription?.id ?? "*"}|${acked?.version ?? ""}|${acked?.base ?? ""}|${acked?.subscription?.id ?? ""}`;
      body = this.#cache.cached(set, key, (nonce) => encodeChange(set, desired, sinceAcked(set, desired, acked), nonce), state);
    }
    // A fresh stream's first response of a type goes even when empty: Envoy waits for it to
    // finish initializing (for the initial fetch timeout, 15 s by default).
    const fresh = state.lastNonce === undefined && !state.envoyHas;
    return body.count === 0 && body.removed === 0 && !fresh ? undefined : body;
  }
}

// A module function, not a closure per response: the bundle wraps every named closure in a
// call that names it when created (esbuild keepNames).
function encodeChange(set: ResourceSet, desired: Delivery, change: Change, nonce: string): ResponseBody {
  return encodeDelta(set.typeUrl, desired.version, change.updated, change.removed, nonce);
}

/** Everything Envoy should hold of the type: the set (or its subscribed part) plus kept-alive clusters. */
function wanted(set: ResourceSet, desired: Delivery): Map<string, XdsResource> {
  const out = new Map<string, XdsResource>();
  if (desired.subscription) {
    for (const name of desired.subscription.names) {
      const resource = set.get(name) ?? set.retired(name);
      if (resource) out.set(name, resource);
    }
  } else {
    for (const resource of set.values()) out.set(resource.name, resource);
  }
  for (const resource of desired.keptAlive) out.set(resource.name, resource);
  return out;
}

function fromEnvoyState(set: ResourceSet, desired: Delivery, envoyHas: ReadonlyMap<string, string>): Change {
  const want = wanted(set, desired);
  const updated = [...want.values()].filter((resource) => envoyHas.get(resource.name) !== resource.version);
  const removed = desired.subscription ? [] : [...envoyHas.keys()].filter((name) => !want.has(name));
  return { updated, removed };
}

function sinceAcked(set: ResourceSet, desired: Delivery, acked: Delivery | undefined): Change {
  const changed = acked ? set.changedSince(acked.base) : undefined;
  if (!acked || changed === undefined) {
    // Nothing acknowledged yet, or too long ago to diff: send the whole state.
    const removed = acked && !desired.subscription ? [...removedSince(set, desired, acked)] : [];
    return { updated: [...wanted(set, desired).values()], removed };
  }
  const subscription = desired.subscription;
  const kept = new Set(desired.keptAlive.map((r) => r.name));
  const updated: XdsResource[] = [];
  const removed: string[] = [];
  for (const name of changed) {
    if (subscription && !subscription.names.has(name)) continue;
    if (kept.has(name)) continue;
    const resource = set.get(name);
    if (resource) updated.push(resource);
    else if (!subscription) removed.push(name);
  }
  if (subscription && acked.subscription !== subscription) {
    for (const name of subscription.names) {
      if (acked.subscription?.names.has(name) || (changed.has(name) && set.has(name))) continue;
      // Gone, yet newly asked for: Envoy warms a cluster sent before (ResourceSet.retired).
      const resource = set.get(name) ?? set.retired(name);
      if (resource) updated.push(resource);
    }
  }
  for (const resource of acked.keptAlive) {
    if (!kept.has(resource.name) && !set.has(resource.name) && !changed.has(resource.name)) removed.push(resource.name);
  }
  return { updated, removed };
}

/** Of the names Envoy dropped since the last response, the resources it subscribes to again. */
function resubscribed(set: ResourceSet, desired: Delivery, forgotten: ReadonlySet<string>): XdsResource[] {
  const again: XdsResource[] = [];
  for (const name of forgotten) {
    // Gone, yet asked for again: Envoy warms a cluster sent before (ResourceSet.retired).
    const resource = desired.subscription?.names.has(name) ? (set.get(name) ?? set.retired(name)) : undefined;
    if (resource) again.push(resource);
  }
  return again;
}

/**
 * True when Envoy may hold resources that are gone and no longer known: the change log does not
 * reach back to what it acknowledged, and a removal since then was forgotten (removals are kept
 * for a while only, resource-table.ts). Only a new stream, on which Envoy lists what it holds,
 * can tell it what to remove. Envoy NACKing every version for longer than removals are kept
 * gets here.
 */
function removalsUnknown(set: ResourceSet, desired: Delivery, acked: Delivery | undefined): boolean {
  return acked !== undefined && !desired.subscription && !set.removalsKnownSince(acked.serial) && set.changedSince(acked.base) === undefined;
}

/** Names Envoy may hold that are gone, when the change log no longer reaches its version. */
function removedSince(set: ResourceSet, desired: Delivery, acked: Delivery): Set<string> {
  const kept = new Set(desired.keptAlive.map((r) => r.name));
  const names = new Set<string>();
  for (const resource of [...set.retiredSince(acked.serial), ...acked.keptAlive]) {
    if (!set.has(resource.name) && !kept.has(resource.name)) names.add(resource.name);
  }
  return names;
}
