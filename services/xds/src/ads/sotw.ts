// State of the world: clusters and listeners are sent whole; endpoints and routes are named,
// and a response carries the subscribed ones that changed (leaving one out deletes nothing).
import type { XdsResource } from "./resources.js";
import { encodeSotw, type ResponseBody, type ResponseCache } from "./responses.js";
import { resourceNames, type SotwRequestView } from "./sotw-request.js";
import { WILDCARD_TYPES, type Protocol, type ResponseInput, type StreamRequest } from "./stream.js";
import type { SubscriptionPool } from "./subscriptions.js";

export function sotwRequest(request: SotwRequestView, subscriptions: SubscriptionPool): StreamRequest {
  return {
    typeUrl: request.typeUrl,
    nodeId: request.nodeId,
    nonce: request.responseNonce,
    error: request.errorMessage === undefined ? undefined : request.errorMessage || "(no detail)",
    subscribe: WILDCARD_TYPES.has(request.typeUrl) ? undefined : (current) => subscriptions.intern(request.namesRaw, resourceNames, current),
    versionInfo: request.versionInfo,
  };
}

export class SotwProtocol implements Protocol {
  readonly name = "sotw";
  readonly #cache: ResponseCache;

  constructor(cache: ResponseCache) {
    this.#cache = cache;
  }

  respond({ set, state, desired }: ResponseInput): ResponseBody | undefined {
    if (state.wildcard) {
      if (desired.keptAlive.length === 0) {
        return this.#cache.cached(set, "*", (nonce) => encodeSotw(set.typeUrl, set.version, [...set.values()], nonce), state);
      }
      // Clusters kept alive for this stream's older routes: a body of its own.
      return encodeSotw(set.typeUrl, desired.version, [...set.values(), ...desired.keptAlive], this.#cache.nonce());
    }
    const subscription = desired.subscription!;
    const acked = state.acked;
    const key = `${subscription.id}|${acked?.base ?? ""}|${acked?.subscription?.id ?? ""}`;
    const body = this.#cache.cached(set, key, (nonce) => {
      const changed = acked ? set.changedSince(acked.base) : undefined;
      const names = new Set<string>();
      if (changed === undefined) {
        for (const name of subscription.names) names.add(name);
      } else {
        for (const name of changed) if (subscription.names.has(name)) names.add(name);
        if (acked!.subscription !== subscription) {
          for (const name of subscription.names) if (!acked!.subscription?.names.has(name)) names.add(name);
        }
      }
      const resources: XdsResource[] = [];
      for (const name of names) {
        // A name Envoy newly asks for that is gone: it warms a cluster sent before (ResourceSet.retired).
        const resource = set.get(name) ?? (acked?.subscription?.names.has(name) ? undefined : set.retired(name));
        if (resource) resources.push(resource);
      }
      return encodeSotw(set.typeUrl, set.version, resources, nonce);
    }, state);
    return body.count === 0 ? undefined : body;
  }
}
