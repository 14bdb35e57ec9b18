// The ADS gRPC server: one SotwStream per Envoy stream. Responses are pre-encoded Buffers, so the
// method's serializer passes them through instead of encoding a message per stream.
import * as grpc from "@grpc/grpc-js";
import { AggregatedDiscoveryServiceService } from "@envoyage/proto/envoy/service/discovery/v3/ads.js";
import { DiscoveryRequest } from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";
import type { ResourceSource } from "./resources.js";
import { SotwResponses } from "./sotw-responses.js";
import { SotwStream, type StreamEvents } from "./sotw-stream.js";
import { SubscriptionPool } from "./subscriptions.js";

export interface AdsEvents extends StreamEvents {
  connect(stream: SotwStream, peer: string): void;
  disconnect(stream: SotwStream, reason: string): void;
  error(stream: SotwStream, error: unknown): void;
}

const streamAggregatedResources = {
  ...AggregatedDiscoveryServiceService.streamAggregatedResources,
  responseSerialize: (bytes: Buffer): Buffer => bytes,
  responseDeserialize: (bytes: Buffer): Buffer => bytes,
};

type AdsCall = grpc.ServerDuplexStream<DiscoveryRequest, Buffer>;

export interface AdsServerOptions {
  source: ResourceSource;
  events: AdsEvents;
}

export class AdsServer {
  readonly #server = new grpc.Server({
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": -1,
    // Find Envoys that vanished without closing their connection.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
  });
  readonly #calls = new Map<SotwStream, AdsCall>();
  readonly #responses = new SotwResponses();
  readonly #subscriptions = new SubscriptionPool();
  readonly #options: AdsServerOptions;

  constructor(options: AdsServerOptions) {
    this.#options = options;
    this.#server.addService({ streamAggregatedResources }, {
      streamAggregatedResources: (call: AdsCall) => this.#serve(call),
    });
    options.source.onCommit(() => {
      for (const stream of this.#calls.keys()) stream.pump();
    });
  }

  get streamCount(): number {
    return this.#calls.size;
  }

  streams(): IterableIterator<SotwStream> {
    return this.#calls.keys();
  }

  /** Binds and starts serving; resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      );
    });
  }

  /**
   * Ends every stream cleanly, so each Envoy reconnects (to another replica) while keeping its
   * config, then stops; connections still open after `graceMs` are cut.
   */
  async shutdown(graceMs: number): Promise<void> {
    for (const call of this.#calls.values()) call.end();
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

  #serve(call: AdsCall): void {
    const { events } = this.#options;
    const stream = new SotwStream({
      source: this.#options.source,
      responses: this.#responses,
      subscriptions: this.#subscriptions,
      events,
      send: (bytes) => call.write(bytes),
    });
    this.#calls.set(stream, call);
    events.connect(stream, call.getPeer());

    let closed = false;
    const close = (reason: string) => {
      if (closed) return;
      closed = true;
      this.#calls.delete(stream);
      stream.close();
      events.disconnect(stream, reason);
    };
    call.on("data", (request: DiscoveryRequest) => {
      try {
        stream.onRequest(request);
      } catch (error) {
        // A bug handling one request must not take the replica down: drop this stream, Envoy
        // reconnects and starts afresh.
        events.error(stream, error);
        call.destroy(error as Error);
        close("internal error");
      }
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
