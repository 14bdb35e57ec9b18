// One Envoy's ADS stream, whatever the protocol variant: what it asked for, what it was sent,
// what it accepted, and when the next response of each type may go. The protocol (state of the
// world or delta) only decides what a response contains (sotw.ts, delta.ts).
//
// Rules (Envoy's "xDS REST and gRPC protocol"):
// - A type is answered only while Envoy has a request of that type outstanding; the ACK or NACK
//   of a response is the next request. An ACK whose nonce is not the latest sent is stale.
// - Make-before-break: listeners and routes are sent only once Envoy has acknowledged the
//   clusters and been sent their endpoints. Envoy holds its CDS ACK back while any cluster it
//   added warms (waits for its endpoints or DNS), so every cluster the routes may reference is
//   warm by then; a cluster that routes Envoy may still hold refer to stays until Envoy has
//   acknowledged routes without it.
// - A NACKed version is never resent; Envoy keeps its last accepted config meanwhile.
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, typeName, xorInto, type ResourceSet, type ResourceSource, type XdsResource } from "./resources.js";
import type { ResponseBody } from "./responses.js";
import type { Subscription, SubscriptionPool } from "./subscriptions.js";

/** The order Envoy wants new configuration in: clusters, endpoints, listeners, routes. */
export const PUSH_ORDER = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;
const SERVED_TYPES: ReadonlySet<string> = new Set(PUSH_ORDER);
/** Types Envoy gets whole (every resource there is), not by name. */
export const WILDCARD_TYPES: ReadonlySet<string> = new Set([CLUSTER_TYPE, LISTENER_TYPE]);
/** Types sent only once clusters and endpoints are caught up, so nothing references what Envoy lacks. */
const AFTER_CLUSTERS: ReadonlySet<string> = new Set([LISTENER_TYPE, ROUTE_TYPE]);

export const PROTOCOL_NAMES = ["sotw", "delta"] as const;
export type ProtocolName = (typeof PROTOCOL_NAMES)[number];

/** What Envoy holds (or is being sent) of one type. */
export interface Delivery {
  /** Version of the state delivered: the set's version, plus any clusters kept alive. */
  version: string;
  /** Version of the resource set it reflects. */
  base: string;
  /** Commit serial of that set. */
  serial: number;
  subscription: Subscription | undefined;
  /** Clusters kept for older routes (not in the set itself). */
  keptAlive: readonly XdsResource[];
}

export interface TypeState {
  readonly typeUrl: string;
  readonly wildcard: boolean;
  /** Latest requested names (named types). */
  subscription: Subscription | undefined;
  /** Envoy has a request of this type outstanding. */
  pending: boolean;
  lastNonce: string | undefined;
  /** The set version of the last response, and nonces of earlier responses at that version (SentNonces). */
  versionSent: string | undefined;
  earlierNonces: Set<string> | undefined;
  /** In flight: what Envoy has not answered yet, and when it was sent (performance.now()). */
  sent: (Delivery & { nonce: string; forgotten: ReadonlySet<string> | undefined; at: number }) | undefined;
  acked: Delivery | undefined;
  /**
   * The version Envoy last NACKed and every subscription it was NACKed with (by their names, as
   * a list that comes back is a new Subscription): going back to one must not resend it.
   */
  rejected: { version: string; subscriptions: Set<string> } | undefined;
  /** Delta: resource versions Envoy said it holds when it (re)connected, until the first ACK. */
  envoyHas: ReadonlyMap<string, string> | undefined;
  /**
   * Delta: names Envoy unsubscribed since the last response. Envoy dropped them, but the
   * subscription acknowledged last (or the ACK of a response in flight) still lists them: the
   * next response sends any that are subscribed again in full, and its ACK settles them.
   */
  forgotten: Set<string> | undefined;
}

/** A request, whatever the protocol, reduced to what the stream needs. */
export interface StreamRequest {
  typeUrl: string;
  nodeId: string | undefined;
  nonce: string;
  /** NACK: Envoy's error_detail message. */
  error: string | undefined;
  /** Named types: the subscription after this request. */
  subscribe?: (current: Subscription | undefined) => Subscription;
  /** SotW: version_info of the first request of a type (what a reconnecting Envoy holds). */
  versionInfo?: string;
  /** Delta: initial_resource_versions of the first request of a type. */
  initialVersions?: ReadonlyMap<string, string>;
  /** Delta: the names this request unsubscribes (Envoy drops those resources). */
  unsubscribed?: readonly string[];
}

/** What a response carries, computed by the protocol from the stream's state. */
export interface ResponseInput {
  set: ResourceSet;
  state: TypeState;
  desired: Delivery;
}

/**
 * The protocol cannot bring Envoy to the desired state on this stream: Envoy must open a new one,
 * on which it says what it holds.
 */
export const START_OVER = Symbol("start over");

export interface Protocol {
  readonly name: ProtocolName;
  /** The response that brings Envoy from its state to `desired`, or undefined if it already holds it. */
  respond(input: ResponseInput): ResponseBody | undefined | typeof START_OVER;
}

/** What a stream reports, for logs, metrics and sync status. */
export interface StreamEvents {
  push(stream: AdsStream, typeUrl: string, body: ResponseBody): void;
  ack(stream: AdsStream, typeUrl: string, version: string, nonce: string): void;
  nack(stream: AdsStream, typeUrl: string, version: string, nonce: string, error: string): void;
  stale(stream: AdsStream, typeUrl: string, nonce: string): void;
  /** Envoy now holds everything as of commit `serial` (every type acknowledged). */
  synced(stream: AdsStream, serial: number): void;
}

export interface AdsStreamOptions {
  protocol: Protocol;
  source: ResourceSource;
  subscriptions: SubscriptionPool;
  events: StreamEvents;
  send: (bytes: Buffer) => void;
  /** Ends the stream, so its Envoy reconnects (see START_OVER). */
  startOver: (reason: string) => void;
}

/**
 * Longest node id and NACK message a stream keeps and reports: whoever receives its events
 * (logs, sync status) gets bounded text, however much an Envoy (or anything speaking ADS) sends.
 */
const MAX_NODE_ID = 1024;
const MAX_ERROR = 8192;

function bounded(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

export class AdsStream {
  nodeId = "";
  readonly protocol: ProtocolName;
  /** The latest commit this Envoy holds completely. */
  syncedSerial = 0;
  readonly #types = new Map<string, TypeState>();
  readonly #options: AdsStreamOptions;
  /**
   * Clusters a reconnecting delta Envoy said it holds that are gone from the set: routes it got
   * on its previous stream may still use them (a replica that died between sending new routes
   * and their ACK), so they stay until this stream has had routes acknowledged.
   */
  #heldAtConnect: XdsResource[] = [];

  constructor(options: AdsStreamOptions) {
    this.#options = options;
    this.protocol = options.protocol.name;
  }

  receive(request: StreamRequest): void {
    if (request.nodeId) this.nodeId = bounded(request.nodeId, MAX_NODE_ID);
    const type = request.typeUrl;
    if (!SERVED_TYPES.has(type)) return;
    const state = this.#state(type);
    const first = state.lastNonce === undefined;

    if (request.nonce !== "" && request.nonce !== state.lastNonce) {
      this.#options.events.stale(this, type, request.nonce);
      // SotW repeats its whole request with each ACK, so a stale one is dropped; a delta
      // request's subscription change still counts.
      if (this.protocol === "sotw" || !request.subscribe) return;
    } else if (state.sent && request.nonce === state.sent.nonce) {
      this.#settle(state, request.error === undefined ? undefined : bounded(request.error, MAX_ERROR));
    } else if (first) {
      this.#adoptEnvoyState(state, request);
    }
    if (!state.wildcard && request.subscribe) {
      state.subscription = request.subscribe(state.subscription);
      if (request.unsubscribed) this.#forget(state, request.unsubscribed);
    }
    // One response of a type in flight at a time: a request that is not its ACK (a delta
    // subscription change) is answered once that ACK arrives.
    if (!state.sent) state.pending = true;
    this.pump();
  }

  /** Sends whatever is due; called on every request and after every commit. */
  pump(): void {
    const source = this.#options.source;
    if (!source.ready) return;
    for (const type of PUSH_ORDER) {
      const state = this.#types.get(type);
      if (state?.pending) this.#respond(state);
    }
    if (source.serial > this.syncedSerial && this.#synced()) {
      this.syncedSerial = source.serial;
      this.#options.events.synced(this, source.serial);
    }
  }

  /** The responses Envoy has not answered yet: one per type at most. */
  *unanswered(): Generator<{ typeUrl: string; version: string; nonce: string; sentAt: number }> {
    for (const state of this.#types.values()) {
      if (state.sent) yield { typeUrl: state.typeUrl, version: state.sent.version, nonce: state.sent.nonce, sentAt: state.sent.at };
    }
  }

  /**
   * EDS clusters Envoy acknowledged but never asked the endpoints of; listeners and routes wait
   * for those (#endpointsCaughtUp). Envoy asks for the endpoints of every EDS cluster it added
   * before it acknowledges them, so these are clusters it did not take: a static cluster of its
   * bootstrap has the name, and Envoy ignores the dynamic one (saying so at debug level only).
   */
  *endpointsNotAskedFor(): Generator<string> {
    if (!this.#clustersCaughtUp()) return;
    const set = this.#options.source.resources(ENDPOINT_TYPE);
    const subscription = this.#types.get(ENDPOINT_TYPE)?.subscription;
    // Cached by the subscription: the common case costs no walk over the set.
    if (set.size === 0 || subscription?.covers(set)) return;
    for (const resource of set.values()) if (!subscription?.names.has(resource.name)) yield resource.name;
  }

  close(): void {
    for (const state of this.#types.values()) {
      if (state.subscription) this.#options.subscriptions.release(state.subscription);
    }
    this.#types.clear();
  }

  #settle(state: TypeState, error: string | undefined): void {
    const sent = state.sent!;
    state.sent = undefined;
    if (error !== undefined) {
      // Envoy did not take the response: what it was to settle is still to be sent.
      for (const name of sent.forgotten ?? []) (state.forgotten ??= new Set()).add(name);
      const names = subscriptionKey(sent.subscription);
      if (state.rejected?.version === sent.version) state.rejected.subscriptions.add(names);
      else state.rejected = { version: sent.version, subscriptions: new Set([names]) };
      this.#options.events.nack(this, state.typeUrl, sent.version, sent.nonce, error);
    } else {
      state.acked = sent;
      state.envoyHas = undefined;
      if (state.typeUrl === ROUTE_TYPE) this.#heldAtConnect = [];
      this.#options.events.ack(this, state.typeUrl, sent.version, sent.nonce);
    }
  }

  /** Delta: Envoy dropped `names`; nothing it was sent or said it holds may count them as held. */
  #forget(state: TypeState, names: readonly string[]): void {
    if (state.envoyHas) {
      const held = new Map(state.envoyHas);
      for (const name of names) held.delete(name);
      state.envoyHas = held;
    }
    if (state.sent || state.acked) for (const name of names) (state.forgotten ??= new Set()).add(name);
  }

  /** A (re)connecting Envoy may already hold resources, possibly from another replica. */
  #adoptEnvoyState(state: TypeState, request: StreamRequest): void {
    if (request.initialVersions && request.initialVersions.size > 0) {
      state.envoyHas = request.initialVersions;
      if (state.typeUrl === CLUSTER_TYPE) {
        const set = this.#options.source.resources(CLUSTER_TYPE);
        for (const name of request.initialVersions.keys()) {
          const retired = set.has(name) ? undefined : set.retired(name);
          if (retired) this.#heldAtConnect.push(retired);
        }
      }
    }
    // SotW can only say "I hold version V of the whole set": worth trusting for wildcard types,
    // whose versions are content hashes computed alike on every replica.
    if (state.wildcard && request.versionInfo) {
      const set = this.#options.source.resources(state.typeUrl);
      if (request.versionInfo === set.version) {
        state.acked = { version: set.version, base: set.version, serial: set.serial, subscription: undefined, keptAlive: [] };
      }
    }
  }

  #respond(state: TypeState): void {
    if (AFTER_CLUSTERS.has(state.typeUrl) && !(this.#clustersCaughtUp() && this.#endpointsCaughtUp())) return;
    const set = this.#options.source.resources(state.typeUrl);
    const desired = this.#desired(state, set);
    const acked = state.acked;
    if (acked?.version === desired.version && acked.subscription === desired.subscription && !state.envoyHas && !state.forgotten) return;
    if (state.rejected?.version === desired.version && state.rejected.subscriptions.has(subscriptionKey(desired.subscription))) return;
    const body = this.#options.protocol.respond({ set, state, desired });
    if (body === START_OVER) {
      this.#options.startOver(`${typeName(state.typeUrl)}: too far behind to tell Envoy what to remove`);
      return;
    }
    if (body === undefined) {
      // Nothing Envoy holds differs from what we want: it already has this state.
      state.acked = desired;
      state.envoyHas = undefined;
      state.forgotten = undefined;
      return;
    }
    state.sent = { ...desired, nonce: body.nonce, forgotten: state.forgotten, at: performance.now() };
    state.forgotten = undefined;
    // Shared bodies this stream was sent at this version are not sent it again (ResponseCache).
    if (state.versionSent === set.version && state.lastNonce !== undefined) (state.earlierNonces ??= new Set()).add(state.lastNonce);
    else state.earlierNonces = undefined;
    state.versionSent = set.version;
    state.lastNonce = body.nonce;
    state.pending = false;
    this.#options.send(body.bytes);
    this.#options.events.push(this, state.typeUrl, body);
  }

  #desired(state: TypeState, set: ResourceSet): Delivery {
    const keptAlive = state.typeUrl === CLUSTER_TYPE ? this.#clustersKeptAlive() : [];
    const version = keptAlive.length === 0 ? set.version : composedVersion(set.version, keptAlive);
    return { version, base: set.version, serial: set.serial, subscription: state.wildcard ? undefined : state.subscription, keptAlive };
  }

  /** True when every type Envoy asked for is acknowledged at the current state, nothing in flight. */
  #synced(): boolean {
    if (this.#types.size === 0) return false;
    for (const state of this.#types.values()) {
      if (state.sent || !state.acked) return false;
      if (state.typeUrl === CLUSTER_TYPE ? !this.#clustersCaughtUp() : state.acked.base !== this.#options.source.resources(state.typeUrl).version) {
        return false;
      }
    }
    return true;
  }

  /**
   * True when Envoy holds the cluster set we want it to hold now. Not before it asked for
   * clusters: an Envoy that reconnects while clusters it added are warming holds its CDS request
   * back until they are warm (it pauses CDS), yet asks for endpoints, listeners and routes; routes
   * sent then could name clusters it never got.
   */
  #clustersCaughtUp(): boolean {
    const state = this.#types.get(CLUSTER_TYPE);
    if (!state) return false;
    return state.acked?.version === this.#desired(state, this.#options.source.resources(CLUSTER_TYPE)).version;
  }

  /**
   * True when Envoy holds, or has been sent, the current endpoints of every EDS cluster. Sent is
   * enough: a cluster Envoy added is warm by the time it acknowledges the clusters (Envoy holds
   * that ACK back while any cluster warms), and the endpoints of the others reach Envoy before
   * routes sent after them (one stream, written in order).
   */
  #endpointsCaughtUp(): boolean {
    const set = this.#options.source.resources(ENDPOINT_TYPE);
    if (set.size === 0) return true;
    const state = this.#types.get(ENDPOINT_TYPE);
    const delivery = state?.sent ?? state?.acked;
    return delivery !== undefined && delivery.base === set.version && delivery.subscription !== undefined && delivery.subscription.covers(set);
  }

  /**
   * Clusters removed since the routes Envoy holds, or is being sent, were built, that those
   * routes may use: they stay in the cluster set until Envoy acknowledges routes without them.
   * A cluster added after both is not kept: neither can refer to it.
   */
  #clustersKeptAlive(): XdsResource[] {
    const clusters = this.#options.source.resources(CLUSTER_TYPE);
    const held = this.#heldAtConnect.length === 0 ? [] : this.#heldAtConnect.filter((resource) => !clusters.has(resource.name));
    const routes = this.#types.get(ROUTE_TYPE);
    if (!routes || (!routes.acked && !routes.sent)) return held;
    const routeSet = this.#options.source.resources(ROUTE_TYPE);
    const built = [routes.acked?.serial, routes.sent?.serial].filter((serial) => serial !== undefined && serial < routeSet.serial) as number[];
    const dropped = built.length === 0 ? [] : clusters.droppedSince(built);
    if (held.length === 0) return dropped;
    const names = new Set(held.map((resource) => resource.name));
    return [...held, ...dropped.filter((resource) => !names.has(resource.name))];
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
        versionSent: undefined,
        earlierNonces: undefined,
        sent: undefined,
        acked: undefined,
        rejected: undefined,
        envoyHas: undefined,
        forgotten: undefined,
      };
      this.#types.set(type, state);
    }
    return state;
  }
}

/** The version of a set plus extra resources: XOR in their digests, as the set itself does. */
function composedVersion(base: string, extra: readonly XdsResource[]): string {
  const accumulator = Buffer.from(base, "hex");
  for (const resource of extra) xorInto(accumulator, resource.digest);
  return accumulator.toString("hex");
}

/** A subscription by its names; wildcard types have none. */
function subscriptionKey(subscription: Subscription | undefined): string {
  return subscription?.key ?? "*";
}
