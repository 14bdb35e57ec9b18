// One Envoy's state-of-the-world ADS stream: what it asked for, what it was sent, what it
// accepted, and what to send next. It deals in typed, versioned resources only.
//
// Rules (Envoy's "xDS REST and gRPC protocol"):
// - A type is answered only while Envoy has a request of that type outstanding; the ACK or NACK
//   of a response is the next request. A request whose nonce is not the latest sent is stale.
// - Clusters and listeners are wildcard: every response carries the whole set. Endpoints and
//   routes are named: a response carries the subscribed resources that changed, and a change of
//   subscription is answered even when no version changed.
// - Make-before-break: listeners and routes are sent only once clusters and endpoints are caught
//   up (every cluster they may reference is warm); a cluster that routes Envoy may still hold
//   refer to stays in the cluster set until Envoy has acknowledged routes without it.
// - A NACKed version is never resent; Envoy keeps its last accepted config meanwhile.
import type { DiscoveryRequest } from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";
import { xorInto } from "../resource-table.js";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, type ResourceSource, type XdsResource } from "./resources.js";
import type { ResponseBody, SotwResponses } from "./sotw-responses.js";
import type { Subscription, SubscriptionPool } from "./subscriptions.js";

/** The order Envoy wants new configuration in: clusters, endpoints, listeners, routes. */
export const PUSH_ORDER = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;
const WILDCARD_TYPES: ReadonlySet<string> = new Set([CLUSTER_TYPE, LISTENER_TYPE]);
/** Types sent only once clusters and endpoints are caught up, so nothing references what Envoy lacks. */
const AFTER_CLUSTERS: ReadonlySet<string> = new Set([LISTENER_TYPE, ROUTE_TYPE]);

interface Delivery {
  /** version_info of the response. */
  version: string;
  /** Version of the resource set the response reflects. */
  base: string;
  /** Commit serial of that set. */
  serial: number;
  subscription: Subscription | undefined;
}

interface TypeState {
  readonly typeUrl: string;
  readonly wildcard: boolean;
  /** Latest requested names (named types). */
  subscription: Subscription | undefined;
  /** Envoy has a request of this type outstanding. */
  pending: boolean;
  lastNonce: string | undefined;
  sent: (Delivery & { nonce: string }) | undefined;
  acked: Delivery | undefined;
  rejected: { version: string; subscription: Subscription | undefined } | undefined;
}

/** What a stream reports, for logs, metrics and sync status. */
export interface StreamEvents {
  push(stream: SotwStream, typeUrl: string, body: ResponseBody): void;
  ack(stream: SotwStream, typeUrl: string, version: string, nonce: string): void;
  nack(stream: SotwStream, typeUrl: string, version: string, nonce: string, error: string): void;
  stale(stream: SotwStream, typeUrl: string, nonce: string): void;
}

export interface SotwStreamOptions {
  source: ResourceSource;
  responses: SotwResponses;
  subscriptions: SubscriptionPool;
  events: StreamEvents;
  send: (bytes: Buffer) => void;
}

export class SotwStream {
  nodeId = "";
  readonly #types = new Map<string, TypeState>();
  readonly #options: SotwStreamOptions;

  constructor(options: SotwStreamOptions) {
    this.#options = options;
  }

  /** Version Envoy last accepted, per type. */
  ackedVersions(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [type, state] of this.#types) if (state.acked) out[type] = state.acked.version;
    return out;
  }

  onRequest(request: DiscoveryRequest): void {
    if (request.node?.id) this.nodeId = request.node.id;
    const type = request.typeUrl;
    if (!(PUSH_ORDER as readonly string[]).includes(type)) return;
    const state = this.#state(type);

    if (state.lastNonce !== undefined && request.responseNonce !== state.lastNonce) {
      this.#options.events.stale(this, type, request.responseNonce);
      return;
    }
    const sent = state.sent;
    if (sent && request.responseNonce === sent.nonce) {
      state.sent = undefined;
      if (request.errorDetail) {
        state.rejected = { version: sent.version, subscription: sent.subscription };
        this.#options.events.nack(this, type, sent.version, sent.nonce, request.errorDetail.message);
      } else {
        state.acked = sent;
        this.#options.events.ack(this, type, sent.version, sent.nonce);
      }
    } else if (state.lastNonce === undefined && state.wildcard && request.versionInfo !== "") {
      // A reconnecting Envoy already holds this version of the whole set (possibly from another
      // replica, which computes the same content hashes): nothing to resend if it is current.
      const set = this.#options.source.resources(type);
      if (request.versionInfo === set.version) {
        state.acked = { version: set.version, base: set.version, serial: set.serial, subscription: undefined };
      }
    }
    if (!state.wildcard) {
      state.subscription = this.#options.subscriptions.intern(request.resourceNames, state.subscription);
    }
    state.pending = true;
    this.pump();
  }

  /** Sends whatever is due; called on every request and after every commit. */
  pump(): void {
    if (!this.#options.source.ready) return;
    for (const type of PUSH_ORDER) {
      const state = this.#types.get(type);
      if (state?.pending) this.#respond(state);
    }
  }

  close(): void {
    for (const state of this.#types.values()) {
      if (state.subscription) this.#options.subscriptions.release(state.subscription);
    }
    this.#types.clear();
  }

  #respond(state: TypeState): void {
    if (AFTER_CLUSTERS.has(state.typeUrl) && !(this.#clustersCaughtUp() && this.#endpointsCaughtUp())) return;
    const set = this.#options.source.resources(state.typeUrl);
    if (state.wildcard) {
      const keptAlive = state.typeUrl === CLUSTER_TYPE ? this.#clustersKeptAlive() : [];
      const version = keptAlive.length === 0 ? set.version : composedVersion(set.version, keptAlive);
      if (state.acked?.version === version || state.rejected?.version === version) return;
      const body =
        keptAlive.length === 0
          ? this.#options.responses.full(set)
          : this.#options.responses.build(set.typeUrl, version, [...set.values(), ...keptAlive]);
      this.#send(state, body, { version, base: set.version, serial: set.serial, subscription: undefined });
      return;
    }

    const subscription = state.subscription!;
    const acked = state.acked;
    if (acked?.base === set.version && acked.subscription === subscription) return;
    if (state.rejected?.version === set.version && state.rejected.subscription === subscription) return;
    const key = `${subscription.id}|${acked?.base ?? ""}|${acked?.subscription?.id ?? ""}`;
    const body = this.#options.responses.named(set, key, () => {
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
      const out: XdsResource[] = [];
      for (const name of names) {
        const resource = set.get(name);
        if (resource) out.push(resource);
      }
      return out;
    });
    const delivery = { version: set.version, base: set.version, serial: set.serial, subscription };
    if (body.count === 0) {
      // Nothing Envoy subscribed to changed: it already holds this version of its subscription.
      state.acked = delivery;
      return;
    }
    this.#send(state, body, delivery);
  }

  #send(state: TypeState, body: ResponseBody, delivery: Delivery): void {
    if (body.nonce === state.lastNonce) return;
    state.sent = { ...delivery, nonce: body.nonce };
    state.lastNonce = body.nonce;
    state.pending = false;
    this.#options.send(body.bytes);
    this.#options.events.push(this, state.typeUrl, body);
  }

  /** True when Envoy holds the cluster set we want it to hold now. */
  #clustersCaughtUp(): boolean {
    const state = this.#types.get(CLUSTER_TYPE);
    if (!state) return true; // this client does not use CDS
    const set = this.#options.source.resources(CLUSTER_TYPE);
    const keptAlive = this.#clustersKeptAlive();
    return state.acked?.version === (keptAlive.length === 0 ? set.version : composedVersion(set.version, keptAlive));
  }

  /** True when Envoy holds the current endpoints of every EDS cluster. */
  #endpointsCaughtUp(): boolean {
    const set = this.#options.source.resources(ENDPOINT_TYPE);
    if (set.size === 0 || !this.#types.has(CLUSTER_TYPE)) return true;
    const acked = this.#types.get(ENDPOINT_TYPE)?.acked;
    return acked !== undefined && acked.base === set.version && acked.subscription!.covers(set);
  }

  /**
   * Clusters removed since the routes Envoy holds (or is being sent) were built: they stay in
   * the cluster set until Envoy acknowledges routes that no longer use them.
   */
  #clustersKeptAlive(): XdsResource[] {
    const routes = this.#types.get(ROUTE_TYPE);
    if (!routes || (!routes.acked && !routes.sent)) return [];
    const routeSet = this.#options.source.resources(ROUTE_TYPE);
    const since = Math.min(routes.acked?.serial ?? Infinity, routes.sent?.serial ?? Infinity);
    if (since >= routeSet.serial) return [];
    return this.#options.source.resources(CLUSTER_TYPE).retiredSince(since);
  }

  #state(type: string): TypeState {
    let state = this.#types.get(type);
    if (!state) {
      state = {
        typeUrl: type,
        wildcard: WILDCARD_TYPES.has(type),
        subscription: undefined,
        pending: false,
        lastNonce: undefined,
        sent: undefined,
        acked: undefined,
        rejected: undefined,
      };
      this.#types.set(type, state);
    }
    return state;
  }
}

/** The version of a set plus extra resources: XOR in their digests, as the set itself does. */
function composedVersion(base: string, extra: XdsResource[]): string {
  const accumulator = Buffer.from(base, "hex");
  for (const resource of extra) xorInto(accumulator, resource.digest);
  return accumulator.toString("hex");
}
