// The NATS connection both services hold: it reconnects forever, to any configured server, and
// tells its owner when the link goes down and comes back.
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { TIMED_OUT, within } from "./deadline.js";

export type LinkEvent = "connected" | "disconnected" | "reconnected";

export interface NatsLinkOptions {
  servers: string[];
  /** Shown by `nats server report connections`. */
  name: string;
  logger: Logger;
}

/** How long closing waits for the server to confirm the drain. */
export const LINK_DRAIN_MS = 1000;

export class NatsLink {
  #connection: NatsConnection | undefined;
  #connecting: Promise<NatsConnection> | undefined;
  #connected = false;
  #closing = false;
  readonly #listeners = new Set<(event: LinkEvent) => void>();
  readonly #options: NatsLinkOptions;

  constructor(options: NatsLinkOptions) {
    this.#options = options;
  }

  get isConnected(): boolean {
    return this.#connected;
  }

  onEvent(listener: (event: LinkEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once connected; until then it keeps trying every configured server. One connection per link. */
  connect(): Promise<NatsConnection> {
    // A connect that failed (refused credentials, say) is tried again by the next caller.
    this.#connecting ??= this.#connect().catch((error: unknown) => {
      this.#connecting = undefined;
      throw error;
    });
    return this.#connecting;
  }

  async #connect(): Promise<NatsConnection> {
    const { servers, name, logger } = this.#options;
    logger.info({ servers }, "connecting to NATS");
    const nc = await connect({
      servers,
      name,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      pingInterval: 5_000,
      maxPingOut: 2,
      // Capturing a stack trace for every request costs more CPU than the request itself;
      // errors still say what failed.
      noAsyncTraces: true,
    });
    this.#connection = nc;
    this.#connected = true;
    logger.info({ server: nc.getServer() }, "connected to NATS");
    void this.#followStatus(nc);
    this.#emit("connected");
    return nc;
  }

  /**
   * Drains the connection (what was published reaches the server), within LINK_DRAIN_MS: a server
   * that is connected but does not answer (stopped, overloaded) would hold the shutdown for good.
   */
  async close(): Promise<void> {
    this.#closing = true;
    const nc = this.#connection;
    if (!nc || nc.isClosed()) return;
    const drained = nc.drain().then(
      () => true,
      () => false,
    );
    const outcome = await within(drained, LINK_DRAIN_MS);
    if (outcome === true) return;
    if (outcome === TIMED_OUT) this.#options.logger.warn({ drainMs: LINK_DRAIN_MS }, "NATS did not confirm the drain in time; closing the connection");
    await nc.close();
  }

  async #followStatus(nc: NatsConnection): Promise<void> {
    const { logger } = this.#options;
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          this.#connected = false;
          if (!this.#closing) logger.warn({ server: status.server }, "disconnected from NATS; reconnecting");
          this.#emit("disconnected");
          break;
        case "reconnect":
          this.#connected = true;
          logger.info({ server: status.server }, "reconnected to NATS");
          this.#emit("reconnected");
          break;
        case "error":
          logger.error({ err: status.error }, "NATS error");
          break;
        default:
          break;
      }
    }
    this.#connected = false;
  }

  #emit(event: LinkEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
