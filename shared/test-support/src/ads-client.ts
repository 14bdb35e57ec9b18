// A real ADS client on the generated types that behaves like Envoy, in state-of-the-world or delta
// mode: it asks for all clusters and listeners, subscribes to the endpoints of EDS clusters and
// the route configurations its listeners name, and ACKs (or, when told to, NACKs) every
// response. Tests use it to check the protocol; benchmarks use it as a fleet of Envoys.
import { isIPv6 } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { Cluster, Cluster_DiscoveryType } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import { Listener } from "@envoyage/proto/envoy/config/listener/v3/listener.js";
import { RouteConfiguration } from "@envoyage/proto/envoy/config/route/v3/route.js";
import { HttpConnectionManager } from "@envoyage/proto/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.js";
import { AggregatedDiscoveryServiceClient } from "@envoyage/proto/envoy/service/discovery/v3/ads.js";
import {
  DeltaDiscoveryRequest,
  DiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";
import { waitFor } from "./wait.js";

export const TYPES = {
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
} as const;

const WILDCARD = new Set<string>([TYPES.cluster, TYPES.listener]);

export interface ReceivedResponse {
  typeUrl: string;
  version: string;
  nonce: string;
  /** Names of the resources carried. */
  names: string[];
  /** Delta: names removed. */
  removed: string[];
  at: number;
}

interface Held {
  bytes: Buffer;
  version: string;
}

interface TypeState {
  version: string;
  nonce: string;
  resources: Map<string, Held>;
  subscribed: string[];
}

export interface AdsClientOptions {
  /** The server's address (127.0.0.1 unless given; an IPv6 one without brackets). */
  host?: string;
  port: number;
  nodeId?: string;
  protocol?: "sotw" | "delta";
  /** Return an error message to NACK a response instead of ACKing it. */
  nack?: (typeUrl: string, names: string[]) => string | undefined;
  /**
   * Like Envoy, warm the EDS clusters a CDS response adds: its ACK waits until the client holds
   * their endpoints (Envoy gives up after its initial fetch timeout, 15 s; this client never does).
   */
  warming?: boolean;
}

type Stream = grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> | grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

export class AdsClient {
  readonly responses: ReceivedResponse[] = [];
  /** Requests sent, as JSON (both protocols). */
  readonly requests: Record<string, unknown>[] = [];
  readonly protocol: "sotw" | "delta";
  readonly #state = new Map<string, TypeState>();
  readonly #client: AggregatedDiscoveryServiceClient;
  #call!: Stream;
  readonly #options: AdsClientOptions;
  #closed = false;
  #firstRequest = true;
  /** Types whose first request on the current stream is held back until resume(). */
  readonly #paused = new Set<string>();
  /** The ACK of a CDS response held back while the EDS clusters it added warm (options.warming). */
  #warming: { nonce: string; waiting: Set<string> } | undefined;
  /** Types whose responses are applied but not acknowledged (holdAcks), with the latest nonce held. */
  readonly #heldAcks = new Map<string, string | undefined>();
  /** What the client held when it last reconnected, per type (delta's initial_resource_versions). */
  #held: Partial<Record<string, Record<string, string>>> = {};
  error: Error | undefined;

  constructor(options: AdsClientOptions) {
    this.#options = options;
    this.protocol = options.protocol ?? "sotw";
    this.#client = new AggregatedDiscoveryServiceClient(`${target(options.host ?? "127.0.0.1")}:${options.port}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
    });
    this.#open({});
  }

  /**
   * Drops the stream and opens a new one, as Envoy does after losing its control plane: it keeps
   * its resources and says what it holds (version_info, or initial_resource_versions in delta).
   */
  reconnect(options: { pause?: string[] } = {}): void {
    this.#call.cancel();
    this.error = undefined;
    this.#warming = undefined;
    for (const type of options.pause ?? []) this.#paused.add(type);
    const held = Object.fromEntries([...this.#state.keys()].map((type) => [type, this.resourceVersions(type)]));
    this.#held = held;
    this.#open(held);
  }

  /**
   * Sends the request of a type that reconnect() held back, as Envoy does with CDS once the
   * clusters it was warming are warm (it pauses CDS meanwhile, also on a new stream).
   */
  resume(typeUrl: string): void {
    if (this.#paused.delete(typeUrl)) this.#request(typeUrl, this.#held[typeUrl]);
  }

  /** Drops the stream without reconnecting (until reconnect()). */
  disconnect(): void {
    this.#call.cancel();
  }

  #open(initial: Partial<Record<string, Record<string, string>>>): void {
    this.#firstRequest = true;
    if (this.protocol === "delta") {
      const call = this.#client.deltaAggregatedResources();
      call.on("data", (response: DeltaDiscoveryResponse) => this.#onDelta(response));
      this.#call = call;
    } else {
      const call = this.#client.streamAggregatedResources();
      call.on("data", (response: DiscoveryResponse) => this.#onSotw(response));
      this.#call = call;
    }
    const call = this.#call;
    call.on("error", (error: Error) => {
      if (!this.#closed && call === this.#call) this.error = error;
    });
    for (const type of Object.values(TYPES)) if (!this.#paused.has(type)) this.#request(type, initial[type]);
  }

  /** A stream's first request of a type: what it holds, and (but for wildcard types) the names it wants. */
  #request(type: string, initial: Record<string, string> | undefined): void {
    const state = this.#typeState(type);
    if (!WILDCARD.has(type) && state.subscribed.length === 0) return;
    if (this.protocol === "delta") {
      this.#sendDelta(type, { subscribe: WILDCARD.has(type) ? ["*"] : state.subscribed, initial });
    } else {
      this.#sendSotw(type, state.version, "");
    }
  }

  /** Version the client accepted last, per type ("" before any); system_version_info in delta. */
  version(typeUrl: string): string {
    return this.#state.get(typeUrl)?.version ?? "";
  }

  /** Names of the resources the client holds of a type. */
  names(typeUrl: string): string[] {
    return [...(this.#state.get(typeUrl)?.resources.keys() ?? [])].sort();
  }

  resource(typeUrl: string, name: string): Buffer | undefined {
    return this.#state.get(typeUrl)?.resources.get(name)?.bytes;
  }

  /** Per-resource versions held (delta), as a reconnecting Envoy reports them. */
  resourceVersions(typeUrl: string): Record<string, string> {
    return Object.fromEntries([...(this.#state.get(typeUrl)?.resources ?? [])].map(([name, held]) => [name, held.version]));
  }

  clusters(): Cluster[] {
    return this.names(TYPES.cluster).map((n) => Cluster.decode(this.resource(TYPES.cluster, n)!));
  }

  endpoints(name: string): ClusterLoadAssignment | undefined {
    const bytes = this.resource(TYPES.endpoint, name);
    return bytes && ClusterLoadAssignment.decode(bytes);
  }

  routes(name = "envoyage_http"): RouteConfiguration | undefined {
    const bytes = this.resource(TYPES.route, name);
    return bytes && RouteConfiguration.decode(bytes);
  }

  /** Domains per virtual host in the route configuration the client holds. */
  virtualHosts(): Record<string, string[]> {
    return Object.fromEntries((this.routes()?.virtualHosts ?? []).map((v) => [v.name, v.domains]));
  }

  /** SotW: sends a request as Envoy would (to test subscription changes and stale nonces). */
  request(typeUrl: string, names: string[], options: { version?: string; nonce?: string } = {}): void {
    const state = this.#typeState(typeUrl);
    if (!WILDCARD.has(typeUrl)) state.subscribed = names;
    this.#sendSotw(typeUrl, options.version ?? state.version, options.nonce ?? state.nonce);
  }

  /** Sends an ACK-shaped request with the given nonce (to test stale nonces), in either protocol. */
  acknowledge(typeUrl: string, nonce: string): void {
    if (this.protocol === "delta") this.#sendDelta(typeUrl, { nonce });
    else this.request(typeUrl, [], { nonce, version: "" });
  }

  /** Delta: subscribes and unsubscribes names of a type. */
  subscribe(typeUrl: string, subscribe: string[], unsubscribe: string[] = []): void {
    const state = this.#typeState(typeUrl);
    state.subscribed = [...new Set([...state.subscribed, ...subscribe])].filter((n) => !unsubscribe.includes(n));
    this.#sendDelta(typeUrl, { subscribe, unsubscribe });
  }

  waitUntil(what: string, check: (client: AdsClient) => boolean, timeoutMs = 5000): Promise<void> {
    return waitFor(
      what,
      () => {
        if (this.error) throw this.error;
        return check(this) ? true : undefined;
      },
      { timeoutMs, intervalMs: 5 },
    ).then(() => undefined);
  }

  close(): void {
    this.#closed = true;
    this.#call.cancel();
    this.#client.close();
  }

  /** Like Envoy's set_node_on_first_message_only: the node goes on a stream's first request. */
  #node() {
    if (!this.#firstRequest) return undefined;
    this.#firstRequest = false;
    return { id: this.#options.nodeId ?? "ads-test-client", cluster: "test" };
  }

  #sendSotw(typeUrl: string, versionInfo: string, responseNonce: string, errorMessage?: string): void {
    const request = DiscoveryRequest.fromPartial({
      typeUrl,
      resourceNames: this.#typeState(typeUrl).subscribed,
      versionInfo,
      responseNonce,
      node: this.#node(),
      errorDetail: errorMessage === undefined ? undefined : { code: 3, message: errorMessage },
    });
    this.requests.push(DiscoveryRequest.toJSON(request) as Record<string, unknown>);
    (this.#call as grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>).write(request);
  }

  #sendDelta(
    typeUrl: string,
    fields: { subscribe?: string[]; unsubscribe?: string[]; nonce?: string; error?: string; initial?: Record<string, string> | undefined },
  ): void {
    const request = DeltaDiscoveryRequest.fromPartial({
      typeUrl,
      resourceNamesSubscribe: fields.subscribe ?? [],
      resourceNamesUnsubscribe: fields.unsubscribe ?? [],
      initialResourceVersions: fields.initial ?? {},
      responseNonce: fields.nonce ?? "",
      node: this.#node(),
      errorDetail: fields.error === undefined ? undefined : { code: 3, message: fields.error },
    });
    this.requests.push(DeltaDiscoveryRequest.toJSON(request) as Record<string, unknown>);
    (this.#call as grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>).write(request);
  }

  #onSotw(response: DiscoveryResponse): void {
    const typeUrl = response.typeUrl;
    const names = response.resources.map((any) => nameOf(typeUrl, any.value));
    this.responses.push({ typeUrl, version: response.versionInfo, nonce: response.nonce, names, removed: [], at: performance.now() });
    const state = this.#typeState(typeUrl);
    state.nonce = response.nonce;
    const rejection = this.#options.nack?.(typeUrl, names);
    if (rejection !== undefined) {
      this.#sendSotw(typeUrl, state.version, response.nonce, rejection);
      return;
    }
    const held = new Set(state.resources.keys());
    if (WILDCARD.has(typeUrl)) state.resources.clear();
    response.resources.forEach((any, i) => state.resources.set(names[i]!, { bytes: any.value, version: response.versionInfo }));
    state.version = response.versionInfo;
    // Like Envoy, subscribe to what new clusters and listeners need before ACKing them.
    this.#followDependencies(typeUrl);
    this.#answer(typeUrl, names, held, response.nonce);
    if (typeUrl === TYPES.endpoint) this.#warmed();
  }

  #onDelta(response: DeltaDiscoveryResponse): void {
    const typeUrl = response.typeUrl;
    const names = response.resources.map((r) => r.name);
    this.responses.push({
      typeUrl,
      version: response.systemVersionInfo,
      nonce: response.nonce,
      names,
      removed: response.removedResources,
      at: performance.now(),
    });
    const state = this.#typeState(typeUrl);
    const rejection = this.#options.nack?.(typeUrl, names);
    if (rejection !== undefined) {
      this.#sendDelta(typeUrl, { nonce: response.nonce, error: rejection });
      return;
    }
    const held = new Set(state.resources.keys());
    for (const resource of response.resources) {
      state.resources.set(resource.name, { bytes: resource.resource!.value, version: resource.version });
    }
    for (const name of response.removedResources) state.resources.delete(name);
    state.version = response.systemVersionInfo;
    this.#followDependencies(typeUrl);
    this.#answer(typeUrl, names, held, response.nonce);
    if (typeUrl === TYPES.endpoint) this.#warmed();
  }

  #holdAck(typeUrl: string, nonce: string): boolean {
    if (!this.#heldAcks.has(typeUrl)) return false;
    this.#heldAcks.set(typeUrl, nonce);
    return true;
  }

  /** From now on responses of a type are applied but not acknowledged, until release(): an ACK on its way. */
  holdAcks(typeUrl: string): void {
    this.#heldAcks.set(typeUrl, undefined);
  }

  /** Sends the ACK held back for a type, if any, and acknowledges its responses again. */
  release(typeUrl: string): void {
    const nonce = this.#heldAcks.get(typeUrl);
    this.#heldAcks.delete(typeUrl);
    if (nonce !== undefined) this.#ack(typeUrl, nonce);
  }

  /** ACKs a response just applied, unless warming or holdAcks holds the ACK back. */
  #answer(typeUrl: string, names: string[], held: ReadonlySet<string>, nonce: string): void {
    if (!this.#warm(typeUrl, names, held, nonce) && !this.#holdAck(typeUrl, nonce)) this.#ack(typeUrl, nonce);
  }

  #ack(typeUrl: string, nonce: string): void {
    if (this.protocol === "delta") this.#sendDelta(typeUrl, { nonce });
    else this.#sendSotw(typeUrl, this.version(typeUrl), nonce);
  }

  /** options.warming: holds a CDS response's ACK back while EDS clusters it added have no endpoints. */
  #warm(typeUrl: string, names: string[], held: ReadonlySet<string>, nonce: string): boolean {
    if (!this.#options.warming || typeUrl !== TYPES.cluster) return false;
    const eds = new Set(this.#edsClusters());
    const waiting = new Set(names.filter((name) => !held.has(name) && eds.has(name) && !this.resource(TYPES.endpoint, name)));
    if (waiting.size === 0) return false;
    this.#warming = { nonce, waiting };
    return true;
  }

  /** Sends the held CDS ACK once every cluster it waited for has its endpoints. */
  #warmed(): void {
    const warming = this.#warming;
    if (!warming) return;
    for (const name of warming.waiting) if (this.resource(TYPES.endpoint, name)) warming.waiting.delete(name);
    if (warming.waiting.size > 0) return;
    this.#warming = undefined;
    this.#ack(TYPES.cluster, warming.nonce);
  }

  #followDependencies(typeUrl: string): void {
    if (typeUrl === TYPES.cluster) this.#need(TYPES.endpoint, this.#edsClusters());
    if (typeUrl === TYPES.listener) this.#need(TYPES.route, this.#routeNames());
  }

  #typeState(typeUrl: string): TypeState {
    let state = this.#state.get(typeUrl);
    if (!state) this.#state.set(typeUrl, (state = { version: "", nonce: "", resources: new Map(), subscribed: [] }));
    return state;
  }

  /** Makes the subscription of a named type exactly `names`, as Envoy does for EDS and RDS. */
  #need(typeUrl: string, names: string[]): void {
    const state = this.#typeState(typeUrl);
    if (names.join("\n") === state.subscribed.join("\n")) return;
    const added = names.filter((n) => !state.subscribed.includes(n));
    const dropped = state.subscribed.filter((n) => !names.includes(n));
    state.subscribed = names;
    for (const name of dropped) state.resources.delete(name);
    if (this.protocol === "delta") this.#sendDelta(typeUrl, { subscribe: added, unsubscribe: dropped });
    else this.#sendSotw(typeUrl, state.version, state.nonce);
  }

  #edsClusters(): string[] {
    return this.clusters().filter((c) => c.type === Cluster_DiscoveryType.EDS).map((c) => c.name);
  }

  #routeNames(): string[] {
    const names = new Set<string>();
    for (const name of this.names(TYPES.listener)) {
      const listener = Listener.decode(this.resource(TYPES.listener, name)!);
      for (const chain of listener.filterChains) {
        for (const filter of chain.filters) {
          if (filter.typedConfig?.typeUrl.endsWith("HttpConnectionManager")) {
            const hcm = HttpConnectionManager.decode(filter.typedConfig.value);
            if (hcm.rds) names.add(hcm.rds.routeConfigName);
          }
        }
      }
    }
    return [...names].sort();
  }
}

function nameOf(typeUrl: string, bytes: Buffer): string {
  switch (typeUrl) {
    case TYPES.cluster:
      return Cluster.decode(bytes).name;
    case TYPES.endpoint:
      return ClusterLoadAssignment.decode(bytes).clusterName;
    case TYPES.listener:
      return Listener.decode(bytes).name;
    case TYPES.route:
      return RouteConfiguration.decode(bytes).name;
    default:
      return "";
  }
}

/** A host as gRPC targets name it: an IPv6 address in brackets. */
function target(host: string): string {
  return isIPv6(host) ? `[${host}]` : host;
}
