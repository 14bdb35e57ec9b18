// A fleet of Envoy-like ADS streams in a process of its own, for the fan-out and scale
// benchmarks: each stream has its own HTTP/2 connection, asks for clusters and listeners,
// subscribes to the endpoints of EDS clusters and to the route configuration, and ACKs every
// response, in state-of-the-world or delta mode, on the generated types.
//
// Parent → fleet (IPC): {watch: {cluster, port}} — report when every stream holds that port
// for that cluster; {diagnose} — say how far the streams got (a watch or a sync that takes too
// long). Fleet → parent: {ready, at, bytes}, {seen: {all, first, from}, bytes} (from: the byte
// count when the watch began), {diagnosis, missing, synced, first, at, bytes}, {error}.
// Work every stream would repeat on identical responses (finding EDS clusters, the watched
// port, encoding the ACK) is done once per response content, so the fleet costs little besides
// the streams.
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { Cluster, Cluster_DiscoveryType } from "@envoyage/proto/envoy/config/cluster/v3/cluster.js";
import { ClusterLoadAssignment } from "@envoyage/proto/envoy/config/endpoint/v3/endpoint.js";
import { AggregatedDiscoveryServiceClient } from "@envoyage/proto/envoy/service/discovery/v3/ads.js";
import {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  DiscoveryResponse,
} from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";

const CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const ROUTE_NAME = "envoyage_http";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    streams: { type: "string" },
    protocol: { type: "string", default: "sotw" },
    services: { type: "string" },
  },
});
const port = Number(values.port);
const streams = Number(values.streams);
const delta = values.protocol === "delta";
/** Streams are ready once they hold endpoints for this many services, and the listener and routes. */
const services = Number(values.services);
const now = () => performance.timeOrigin + performance.now();

let bytes = 0;
const countBytes = <T>(decode: (b: Buffer) => T) => (b: Buffer): T => {
  bytes += b.length;
  return decode(b);
};
// The generated client, counting the bytes of every response it decodes.
const Client = grpc.makeGenericClientConstructor(
  {
    streamAggregatedResources: {
      path: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
      requestStream: true,
      responseStream: true,
      requestSerialize: (b: Buffer) => b, // encoded by the stream (sotwRequest)
      requestDeserialize: (b: Buffer) => DiscoveryRequest.decode(b),
      responseSerialize: (r: DiscoveryResponse) => Buffer.from(DiscoveryResponse.encode(r).finish()),
      responseDeserialize: countBytes((b) => DiscoveryResponse.decode(b)),
    },
    deltaAggregatedResources: {
      path: "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
      requestStream: true,
      responseStream: true,
      requestSerialize: (b: Buffer) => b, // encoded by the stream (deltaRequest)
      requestDeserialize: (b: Buffer) => DeltaDiscoveryRequest.decode(b),
      responseSerialize: (r: DeltaDiscoveryResponse) => Buffer.from(DeltaDiscoveryResponse.encode(r).finish()),
      responseDeserialize: countBytes((b) => DeltaDiscoveryResponse.decode(b)),
    },
  },
  "AggregatedDiscoveryService",
) as unknown as typeof AggregatedDiscoveryServiceClient;

/**
 * Memo of per-content work: EDS cluster names of a CDS response, ports in an EDS response, and
 * the encoded resource_names of a SotW request (with 10,000 clusters, encoding the names for
 * every ACK of every stream would make the fleet, not the server, what the benchmark measures).
 */
const edsNamesOf = new Map<string, string[]>();
const namesFieldsOf = new Map<string, Buffer>();
const portsOf = new Map<string, Map<string, number>>();
const contentKey = (type: string, version: string, count: number) => `${type}|${version}|${count}`;

function edsNames(key: string, resources: Buffer[]): string[] {
  let names = edsNamesOf.get(key);
  if (!names) {
    names = resources.map((b) => Cluster.decode(b)).filter((c) => c.type === Cluster_DiscoveryType.EDS).map((c) => c.name);
    edsNamesOf.set(key, names);
  }
  return names;
}

function ports(key: string, resources: Buffer[]): Map<string, number> {
  let found = portsOf.get(key);
  if (!found) {
    found = new Map();
    for (const b of resources) {
      const cla = ClusterLoadAssignment.decode(b);
      const port = cla.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue;
      if (port !== undefined) found.set(cla.clusterName, port);
    }
    portsOf.set(key, found);
  }
  return found;
}

interface Names {
  key: string;
  list: string[];
}
const ROUTE_NAMES: Names = { key: "route", list: [ROUTE_NAME] };

/** resource_names fields alone: appended to the rest of a request, they make a valid one. */
function namesFields(key: string, names: string[]): Buffer {
  let fields = namesFieldsOf.get(key);
  if (!fields) {
    fields = Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ resourceNames: names })).finish());
    namesFieldsOf.set(key, fields);
  }
  return fields;
}

/** A SotW request: its small fields encoded, then the memoized names. */
function sotwRequest(typeUrl: string, node: { id: string; cluster: string } | undefined, responseNonce: string, versionInfo: string, names: Buffer | undefined): Buffer {
  const fields = Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromPartial({ typeUrl, node, responseNonce, versionInfo })).finish());
  return names ? Buffer.concat([fields, names]) : fields;
}

function deltaRequest(typeUrl: string, node: { id: string; cluster: string } | undefined, responseNonce: string, subscribe: string[], unsubscribe: string[]): Buffer {
  const request = DeltaDiscoveryRequest.fromPartial({ typeUrl, node, responseNonce, resourceNamesSubscribe: subscribe, resourceNamesUnsubscribe: unsubscribe });
  return Buffer.from(DeltaDiscoveryRequest.encode(request).finish());
}

/**
 * Encoded ACKs by what they say. Streams ACK the same responses with the same bytes (a server's
 * nonces are per response or per stream count, so they repeat across streams): encoding each
 * ACK anew made a thousand streams' ACKs a tenth of the load client's time for one change.
 */
const acks = new Map<string, Buffer>();
function ack(key: string, encode: () => Buffer): Buffer {
  let bytes = acks.get(key);
  if (!bytes) {
    if (acks.size >= 100_000) acks.clear();
    bytes = encode();
    acks.set(key, bytes);
  }
  return bytes;
}

class Stream {
  /** Endpoint assignments received (readiness), and the watched cluster's port. */
  endpoints = 0;
  watchedPort: number | undefined;
  ready = false;
  readonly #versions = new Map<string, string>();
  readonly #nonces = new Map<string, string>();
  readonly #edsSubscribed = new Set<string>();
  #first = true;
  /** SotW: the EDS names subscribed, keyed by the content of the CDS response they came from. */
  #edsNames: Names = { key: "none", list: [] };
  readonly #send: (type: string, fields: { names?: Names; nonce?: string; subscribe?: string[]; unsubscribe?: string[] }) => void;

  constructor(index: number, onChange: (stream: Stream) => void) {
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1, // a connection of its own, like a separate Envoy
      "grpc.max_receive_message_length": -1,
    });
    const node = () => {
      if (!this.#first) return undefined;
      this.#first = false;
      return { id: `fleet-${index}`, cluster: "fleet" };
    };
    if (delta) {
      const call = client.deltaAggregatedResources() as unknown as grpc.ClientDuplexStream<Buffer, DeltaDiscoveryResponse>;
      call.on("error", (error: Error) => process.send?.({ error: error.message }));
      this.#send = (type, f) => call.write(deltaRequest(type, node(), f.nonce ?? "", f.subscribe ?? [], f.unsubscribe ?? []));
      call.on("data", (r: DeltaDiscoveryResponse) => {
        this.#versions.set(r.typeUrl, r.systemVersionInfo);
        this.#nonces.set(r.typeUrl, r.nonce);
        const values = r.resources.map((x) => x.resource!.value);
        this.#handle(r.typeUrl, r.systemVersionInfo, values, r.removedResources);
        call.write(ack(`${r.typeUrl}|${r.nonce}`, () => deltaRequest(r.typeUrl, undefined, r.nonce, [], [])));
        onChange(this);
      });
      this.#send(CLUSTER, { subscribe: ["*"] });
      this.#send(LISTENER, { subscribe: ["*"] });
      this.#send(ROUTE, { subscribe: [ROUTE_NAME] });
    } else {
      const call = client.streamAggregatedResources() as unknown as grpc.ClientDuplexStream<Buffer, DiscoveryResponse>;
      call.on("error", (error: Error) => process.send?.({ error: error.message }));
      this.#send = (type, f) =>
        call.write(
          sotwRequest(type, node(), f.nonce ?? "", this.#versions.get(type) ?? "", f.names && namesFields(f.names.key, f.names.list)),
        );
      call.on("data", (r: DiscoveryResponse) => {
        this.#versions.set(r.typeUrl, r.versionInfo);
        this.#nonces.set(r.typeUrl, r.nonce);
        this.#handle(r.typeUrl, r.versionInfo, r.resources.map((x) => x.value), []);
        const names = r.typeUrl === ENDPOINT ? this.#edsNames : r.typeUrl === ROUTE ? ROUTE_NAMES : undefined;
        const key = `${r.typeUrl}|${r.nonce}|${r.versionInfo}|${names?.key}`;
        call.write(ack(key, () => sotwRequest(r.typeUrl, undefined, r.nonce, r.versionInfo, names && namesFields(names.key, names.list))));
        onChange(this);
      });
      this.#send(CLUSTER, {});
      this.#send(LISTENER, {});
      this.#send(ROUTE, { names: ROUTE_NAMES });
    }
  }

  /**
   * Holds the whole configuration: endpoints of every service, and the listener and route
   * configuration, which come last. A change is timed only once every stream is synced, so it
   * measures the change and not the rest of the initial sync.
   */
  synced(): boolean {
    return this.endpoints >= services && this.#versions.has(LISTENER) && this.#versions.has(ROUTE);
  }

  /** What this stream holds, for a benchmark that failed. */
  describe(): string {
    const types = [...this.#versions].map(([type, version]) => `${type.split(".").pop()} v${version.slice(0, 8)} n${this.#nonces.get(type)}`);
    return `port ${this.watchedPort ?? "?"}, ${this.#edsSubscribed.size} EDS names, ${types.join(", ")}`;
  }

  #handle(type: string, version: string, resources: Buffer[], removed: string[]): void {
    const key = contentKey(type, version, resources.length);
    if (type === CLUSTER) {
      const names = edsNames(key, resources);
      const wanted = delta ? new Set([...this.#edsSubscribed, ...names].filter((n) => !removed.includes(n))) : new Set(names);
      const added = [...wanted].filter((n) => !this.#edsSubscribed.has(n));
      const dropped = [...this.#edsSubscribed].filter((n) => !wanted.has(n));
      if (added.length > 0 || dropped.length > 0) {
        this.#edsSubscribed.clear();
        for (const n of wanted) this.#edsSubscribed.add(n);
        if (delta) this.#send(ENDPOINT, { subscribe: added, unsubscribe: dropped });
        else {
          this.#edsNames = { key, list: [...wanted] };
          this.#send(ENDPOINT, { names: this.#edsNames, nonce: this.#nonces.get(ENDPOINT) ?? "" });
        }
      }
    } else if (type === ENDPOINT) {
      this.endpoints += resources.length;
      if (watch) {
        const p = ports(key, resources).get(watch.cluster);
        if (p !== undefined) this.watchedPort = p;
      }
    }
  }
}

let watch: { cluster: string; port: number } | undefined;
let watchFrom = 0;
let pending = new Set<Stream>();
let firstAt = 0;
let readyCount = 0;
const all: Stream[] = [];

function onChange(stream: Stream): void {
  if (watch) {
    if (pending.has(stream) && stream.watchedPort === watch.port) {
      pending.delete(stream);
      firstAt ||= now();
      if (pending.size === 0) {
        process.send?.({ seen: { all: now(), first: firstAt, from: watchFrom }, bytes });
        watch = undefined;
      }
    }
  } else if (!stream.ready && stream.synced()) {
    stream.ready = true;
    if (++readyCount === streams) process.send?.({ ready: true, at: now(), bytes });
  }
}

process.on("message", (message: { watch?: { cluster: string; port: number }; diagnose?: boolean }) => {
  if (message.diagnose) {
    const sample = [...pending].slice(0, 5).map((s) => s.describe());
    process.send?.({
      diagnosis: `${pending.size} of ${all.length} streams do not hold the change; e.g. ${sample.join("; ")}`,
      missing: pending.size,
      synced: readyCount,
      first: firstAt,
      at: now(),
      bytes: bytes - watchFrom,
    });
  }
  if (message.watch) {
    watch = message.watch;
    watchFrom = bytes;
    firstAt = 0;
    for (const stream of all) stream.watchedPort = undefined;
    pending = new Set(all);
    if (pending.size === 0) process.send?.({ seen: { all: now(), first: now(), from: watchFrom }, bytes });
  }
});

// Open streams in batches, so the server accepts them at a pace a real fleet would reconnect at.
for (let i = 0; i < streams; i++) {
  all.push(new Stream(i, onChange));
  if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 20));
}
// Against a server that never answers (the memory floor), ready means connected.
if (services === 0) setTimeout(() => process.send?.({ ready: true, at: now(), bytes }), 1000);
