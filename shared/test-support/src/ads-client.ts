// A real ADS client on the generated types that behaves like Envoy: it asks for all clusters and
// listeners, subscribes to the endpoints of EDS clusters and the route configurations its
// listeners name, and ACKs (or, when told to, NACKs) every response. Tests use it to check the
// protocol; benchmarks use it as a fleet of Envoys.
import * as grpc from "@grpc/grpc-js";
import { Cluster, Cluster_DiscoveryType } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import { Listener } from "@envoyage/proto/envoy/config/listener/v3/listener.js";
import { RouteConfiguration } from "@envoyage/proto/envoy/config/route/v3/route.js";
import { HttpConnectionManager } from "@envoyage/proto/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.js";
import { AggregatedDiscoveryServiceClient } from "@envoyage/proto/envoy/service/discovery/v3/ads.js";
import { DiscoveryRequest, type DiscoveryResponse } from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";
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
  names: string[];
  at: number;
}

interface TypeState {
  version: string;
  nonce: string;
  /** Resource bytes (Any.value) by name, as Envoy would hold them. */
  resources: Map<string, Buffer>;
  subscribed: string[];
}

export interface AdsClientOptions {
  port: number;
  host?: string;
  nodeId?: string;
  /** Return an error message to NACK a response instead of ACKing it. */
  nack?: (response: DiscoveryResponse) => string | undefined;
  /** Envoy's first requests after a reconnect carry the versions it holds. */
  initialVersions?: Partial<Record<string, string>>;
}

export class AdsClient {
  readonly responses: ReceivedResponse[] = [];
  readonly requests: DiscoveryRequest[] = [];
  readonly #state = new Map<string, TypeState>();
  readonly #client: AggregatedDiscoveryServiceClient;
  readonly #call: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  readonly #options: AdsClientOptions;
  #closed = false;
  error: Error | undefined;

  constructor(options: AdsClientOptions) {
    this.#options = options;
    this.#client = new AggregatedDiscoveryServiceClient(`${options.host ?? "127.0.0.1"}:${options.port}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
    });
    this.#call = this.#client.streamAggregatedResources();
    this.#call.on("data", (response: DiscoveryResponse) => this.#onResponse(response));
    this.#call.on("error", (error: Error) => {
      if (!this.#closed) this.error = error;
    });
    for (const type of [TYPES.cluster, TYPES.listener]) {
      const state = this.#typeState(type);
      state.version = options.initialVersions?.[type] ?? "";
      this.#send(type, [], state.version, "");
    }
  }

  /** Version the client accepted last, per type ("" before any). */
  version(typeUrl: string): string {
    return this.#state.get(typeUrl)?.version ?? "";
  }

  /** Names of the resources the client holds of a type. */
  names(typeUrl: string): string[] {
    return [...(this.#state.get(typeUrl)?.resources.keys() ?? [])].sort();
  }

  resource(typeUrl: string, name: string): Buffer | undefined {
    return this.#state.get(typeUrl)?.resources.get(name);
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

  /** Sends a request as Envoy would (used to test subscription changes and stale nonces). */
  request(typeUrl: string, names: string[], options: { version?: string; nonce?: string } = {}): void {
    const state = this.#typeState(typeUrl);
    if (!WILDCARD.has(typeUrl)) state.subscribed = names;
    this.#send(typeUrl, names, options.version ?? state.version, options.nonce ?? state.nonce);
  }

  waitUntil(what: string, check: (client: AdsClient) => boolean, timeoutMs = 5000): Promise<void> {
    return waitFor(what, () => {
      if (this.error) throw this.error;
      return check(this) ? true : undefined;
    }, { timeoutMs, intervalMs: 5 }).then(() => undefined);
  }

  close(): void {
    this.#closed = true;
    this.#call.cancel();
    this.#client.close();
  }

  #send(typeUrl: string, names: string[], versionInfo: string, responseNonce: string, errorMessage?: string): void {
    const request = DiscoveryRequest.fromPartial({
      typeUrl,
      resourceNames: names,
      versionInfo,
      responseNonce,
      node: this.requests.length === 0 ? { id: this.#options.nodeId ?? "ads-test-client", cluster: "test" } : undefined,
      errorDetail: errorMessage === undefined ? undefined : { code: 3, message: errorMessage },
    });
    this.requests.push(request);
    this.#call.write(request);
  }

  #onResponse(response: DiscoveryResponse): void {
    const typeUrl = response.typeUrl;
    const names = response.resources.map((any) => this.#nameOf(typeUrl, any.value));
    this.responses.push({ typeUrl, version: response.versionInfo, nonce: response.nonce, names, at: performance.now() });
    const state = this.#typeState(typeUrl);
    state.nonce = response.nonce;

    const rejection = this.#options.nack?.(response);
    if (rejection !== undefined) {
      this.#send(typeUrl, state.subscribed, state.version, response.nonce, rejection);
      return;
    }
    if (WILDCARD.has(typeUrl)) state.resources.clear();
    response.resources.forEach((any, i) => state.resources.set(names[i]!, any.value));
    state.version = response.versionInfo;

    // Like Envoy, subscribe to what the new clusters and listeners need before ACKing them.
    if (typeUrl === TYPES.cluster) this.#subscribe(TYPES.endpoint, this.#edsClusters());
    if (typeUrl === TYPES.listener) this.#subscribe(TYPES.route, this.#routeNames());
    this.#send(typeUrl, state.subscribed, state.version, response.nonce);
  }

  #typeState(typeUrl: string): TypeState {
    let state = this.#state.get(typeUrl);
    if (!state) this.#state.set(typeUrl, (state = { version: "", nonce: "", resources: new Map(), subscribed: [] }));
    return state;
  }

  #subscribe(typeUrl: string, names: string[]): void {
    const state = this.#typeState(typeUrl);
    if (names.join("\n") === state.subscribed.join("\n")) return;
    state.subscribed = names;
    for (const name of state.resources.keys()) if (!names.includes(name)) state.resources.delete(name);
    this.#send(typeUrl, names, state.version, state.nonce);
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

  #nameOf(typeUrl: string, bytes: Buffer): string {
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
}
