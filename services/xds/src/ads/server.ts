// The ADS gRPC server: StreamAggregatedResources (state of the world) and
// DeltaAggregatedResources, one AdsStream per Envoy stream. Responses are pre-encoded Buffers, so
// the methods' serializers pass them through instead of encoding a message per stream; SotW
// requests are decoded lazily (sotw-request.ts).
import { isIPv6 } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { AggregatedDiscoveryServiceService } from "@envoyage/proto/envoy/service/discovery/v3/ads.js";
import type { DeltaDiscoveryRequest } from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";
import { DeltaProtocol, deltaRequest } from "./delta.js";
import type { ResourceSource } from "./resources.js";
import { ResponseCache } from "./responses.js";
import { SotwProtocol, sotwRequest } from "./sotw.js";
import { decodeSotwRequest, type SotwRequestView } from "./sotw-request.js";
import { AdsStream, type Protocol, type ProtocolName, type StreamEvents, type StreamRequest } from "./stream.js";
import { SubscriptionPool } from "./subscriptions.js";
import { DEFAULT_STALL_MS, WriteBudget } from "./write-budget.js";

export interface AdsEvents extends StreamEvents {
  connect(stream: AdsStream, peer: string): void;
  disconnect(stream: AdsStream, reason: string): void;
  error(stream: AdsStream, error: unknown): void;
}

const passThrough = { responseSerialize: (bytes: Buffer): Buffer => bytes, responseDeserialize: (bytes: Buffer): Buffer => bytes };
const definition = {
  streamAggregatedResources: { ...AggregatedDiscoveryServiceService.streamAggregatedResources, ...passThrough, requestDeserialize: decodeSotwRequest },
  deltaAggregatedResources: { ...AggregatedDiscoveryServiceService.deltaAggregatedResources, ...passThrough },
};

type Call<Request> = grpc.ServerDuplexStream<Request, Buffer>;

export interface AdsServerOptions {
  source: ResourceSource;
  events: AdsEvents;
  /** Response bytes being written to all streams at once, at most (write-budget.ts). */
  writeBudgetBytes?: number;
}

const DEFAULT_WRITE_BUDGET_BYTES = 64 * 1024 * 1024;
/**
 * Streams pumped per turn of the event loop after a commit. Writes leave for the socket only
 * when the turn ends, so pumping a thousand streams in one turn would hold every response back
 * until the last is written; in turns of this many, the first Envoys get the change (and the
 * ones after them are written) while the rest wait their turn. Turns go round the streams in
 * order: a commit during a round adds the streams already pumped at the end, so changes that
 * keep coming cannot keep the last Envoys waiting.
 */
const PUMP_BATCH = 64;

export class AdsServer {
  readonly #server = new grpc.Server({
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": -1,
    // Find Envoys that vanished without closing their connection.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    // Channelz keeps per-connection trace and counters for a debug service we do not expose:
    // ~2 KiB of every idle Envoy's connection (bench/RESULTS.md, fan-out).
    "grpc.enable_channelz": 0,
  });
  /**
   * Each stream's call, how to close it (forget the stream: nothing more is sent or heard on it)
   * and how to drop it (after an internal error, or when its Envoy stopped reading: write-budget.ts).
   */
  readonly #calls = new Map<AdsStream, { call: Call<unknown>; close: (reason: string) => void; drop: (reason: string) => void }>();
  readonly #subscriptions = new SubscriptionPool();
  readonly writes: WriteBudget;
  readonly #sotw: Protocol;
  readonly #delta: Protocol;
  readonly #options: AdsServerOptions;
  /** Streams to pump, in turn order (a Set keeps insertion order; a stream is deleted before it is pumped, so a commit meanwhile appends it again). */
  readonly #due = new Set<AdsStream>();
  readonly #stopFollowingCommits: () => void;

  constructor(options: AdsServerOptions) {
    this.#options = options;
    this.writes = new WriteBudget(options.writeBudgetBytes ?? DEFAULT_WRITE_BUDGET_BYTES, {
      onStall: (stream) =>
        this.#calls.get(stream as AdsStream)?.drop(`not reading: a response stayed unflushed for ${DEFAULT_STALL_MS / 1000} s`),
    });
    const cache = new ResponseCache();
    this.#sotw = new SotwProtocol(cache);
    this.#delta = new DeltaProtocol(cache);
    this.#server.addService(definition, {
      streamAggregatedResources: (call: Call<SotwRequestView>) =>
        this.#serve(call, this.#sotw, (request) => sotwRequest(request, this.#subscriptions)),
      deltaAggregatedResources: (call: Call<DeltaDiscoveryRequest>) =>
        this.#serve(call, this.#delta, (request) => deltaRequest(request, this.#subscriptions)),
    });
    this.#stopFollowingCommits = options.source.onCommit(() => {
      const idle = this.#due.size === 0;
      for (const stream of this.#calls.keys()) this.#due.add(stream);
      if (idle) this.#pumpBatch();
    });
  }

  /** The open streams. */
  streams(): IterableIterator<AdsStream> {
    return this.#calls.keys();
  }

  get streamCount(): number {
    return this.#calls.size;
  }

  /** Open streams by protocol. */
  streamCounts(): Record<ProtocolName, number> {
    const counts = { sotw: 0, delta: 0 };
    for (const stream of this.#calls.keys()) counts[stream.protocol]++;
    return counts;
  }

  /** Binds and starts serving (plaintext unless given credentials); resolves with the bound port (useful with port 0). */
  listen(host: string, port: number, credentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    return new Promise((resolve, reject) => {
      // grpc-js reads "host:port": an IPv6 address needs its brackets there (XDS_HOST=::1).
      this.#server.bindAsync(isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`, credentials, (error, bound) =>
        error ? reject(error) : resolve(bound),
      );
    });
  }

  /**
   * Ends every stream cleanly, so each Envoy reconnects (to another replica) while keeping its
   * config, then stops; connections still open after `graceMs` are cut.
   */
  async shutdown(graceMs: number): Promise<void> {
    // Ended streams are closed first: a commit during the grace period must not be pushed on them
    // (written after the end, and counted as pushed).
    this.#stopFollowingCommits();
    this.#due.clear();
    for (const { call, close } of [...this.#calls.values()]) {
      close("the replica is shutting down");
      call.end();
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Pumps the next batch of due streams now, and the rest on later turns. */
  #pumpBatch(): void {
    let count = 0;
    for (const stream of this.#due) {
      if (count++ === PUMP_BATCH) break;
      this.#due.delete(stream);
      if (this.#calls.has(stream)) this.#guarded(stream, () => stream.pump());
    }
    if (this.#due.size > 0) setImmediate(() => this.#pumpBatch());
  }

  /**
   * Runs one stream's handling of a request or a commit. A bug there must not take the replica
   * down: the stream is dropped, and its Envoy reconnects and starts afresh.
   */
  #guarded(stream: AdsStream, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.#options.events.error(stream, error);
      this.#calls.get(stream)?.drop("internal error");
    }
  }

  #serve<Request>(call: Call<Request>, protocol: Protocol, normalize: (request: Request) => StreamRequest): void {
    const { events } = this.#options;
    const stream = new AdsStream({
      protocol,
      source: this.#options.source,
      subscriptions: this.#subscriptions,
      events,
      send: (bytes) => this.writes.write(stream, bytes, (b, flushed) => call.write(b, flushed)),
      startOver: (reason) => this.#calls.get(stream)?.drop(reason),
    });
    events.connect(stream, call.getPeer());

    let closed = false;
    const close = (reason: string) => {
      if (closed) return;
      closed = true;
      this.#calls.delete(stream);
      this.writes.forget(stream);
      stream.close();
      events.disconnect(stream, reason);
    };
    // Ends the call with a status, grpc-js's way for a handler to fail a stream (destroying the
    // call would send Envoy nothing: no trailers, no reset, and it would wait on a dead stream).
    // The trailers follow what was written before them; Envoy reconnects once it has them.
    const drop = (reason: string) => {
      close(reason);
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: `Envoyage dropped the stream: ${reason}` });
    };
    this.#calls.set(stream, { call: call as Call<unknown>, close, drop });
    // A dropped stream still receives until its trailers are out: what comes meanwhile is ignored,
    // or it would start the stream over and write after the end (the call is then destroyed
    // without a status).
    call.on("data", (request: Request) => {
      if (!closed) this.#guarded(stream, () => stream.receive(normalize(request)));
    });
    call.on("end", () => {
      call.end();
      close("closed by Envoy");
    });
    call.on("error", (error: Error) => close(error.message));
    call.on("cancelled", () => close("cancelled"));
    call.on("close", () => close("connection closed"));
  }
}
