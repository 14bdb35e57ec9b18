// The NATS connection both services hold: it reconnects forever, to any configured server, and
// tells its owner when the link goes down and comes back.
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { TIMED_OUT, within } from "./deadline.js";
import { connectionOptions, describeAccess, NO_NATS_ACCESS, type NatsAccess } from "./nats-access.js";
import { findServer } from "./nats-probe.js";

/** "lost": the client closed the connection for good on its own (it will not reconnect). */
export type LinkEvent = "connected" | "disconnected" | "reconnected" | "lost";

export interface NatsLinkOptions {
  servers: string[];
  /** Shown by `nats server report connections`. */
  name: string;
  logger: Logger;
  /** Credentials and TLS (registrySettings: NATS_USER, NATS_CREDS, NATS_CA, …); none by default. */
  access?: NatsAccess;
}

/** How long one try to connect may take, TLS handshake and NATS greeting included (the client's default is 20 s). */
export const CONNECT_TIMEOUT_MS = 5_000;
/** How soon the client tries again once connected and cut off (plus up to 100 ms of jitter). */
const RECONNECT_WAIT_MS = 250;

/** How long closing waits for the server to confirm the drain. */
export const LINK_DRAIN_MS = 1000;

export class NatsLink {
  #connection: NatsConnection | undefined;
  #connecting: Promise<NatsConnection> | undefined;
  #connected = false;
  #closing = false;
  readonly #listeners = new Set<(event: LinkEvent) => void>();
  readonly #options: NatsLinkOptions;
  readonly #access: NatsAccess;

  constructor(options: NatsLinkOptions) {
    this.#options = options;
    this.#access = options.access ?? NO_NATS_ACCESS;
  }

  get isConnected(): boolean {
    return this.#connected;
  }

  /** The server connected to ("host:port"), if any. */
  get server(): string | undefined {
    return this.#connected ? this.#connection?.getServer() : undefined;
  }

  onEvent(listener: (event: LinkEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves once connected; until then it keeps trying every configured server, also one that
   * refuses this client, and says why none takes it (nats-probe.ts). One connection per link.
   */
  connect(): Promise<NatsConnection> {
    this.#connecting ??= this.#connect();
    return this.#connecting;
  }

  async #connect(): Promise<NatsConnection> {
    const { servers, name, logger } = this.#options;
    const details = describeAccess(this.#access);
    logger.info({ servers, ...details }, "connecting to NATS");
    const options = { name, timeout: CONNECT_TIMEOUT_MS, ...connectionOptions(this.#access, servers, logger) };
    const stopped = () => this.#closing;
    for (;;) {
      const first = await findServer({ servers, connection: options, logger, details, stopped });
      if (first === undefined) break;
      let nc: NatsConnection;
      try {
        nc = await connect({
          ...options,
          // The server that just took a probe first, so no server fails before it (nats-probe.ts).
          servers: [first, ...servers.filter((server) => server !== first)],
          noRandomize: true,
          waitOnFirstConnect: false,
          maxReconnectAttempts: -1,
          reconnectTimeWait: RECONNECT_WAIT_MS,
          reconnectJitter: 100,
          pingInterval: 5_000,
          maxPingOut: 2,
          // By default the client stops trying for good after the same authorization error twice:
          // credentials fixed on the server, or a rotated creds file, would need a restart.
          ignoreAuthErrorAbort: true,
          // Capturing a stack trace for every request costs more CPU than the request itself;
          // errors still say what failed.
          noAsyncTraces: true,
        });
      } catch {
        continue; // it went away since the probe: look again
      }
      if (this.#closing) {
        await nc.close();
        break;
      }
      this.#connection = nc;
      this.#connected = true;
      logger.info({ server: nc.getServer() }, "connected to NATS");
      void this.#followStatus(nc);
      this.#emit("connected");
      return nc;
    }
    // Closed before it ever connected: the process is stopping, and nothing waits for NATS any more.
    return new Promise<never>(() => undefined);
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
    // While reconnecting, a server that refuses this client says so at every try (4 a second):
    // each error once until the link is back.
    let lastError: string | undefined;
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          // The client says it again after every failed try to reconnect: once is news.
          if (!this.#connected) break;
          this.#connected = false;
          if (!this.#closing) logger.warn({ server: status.server }, "disconnected from NATS; reconnecting");
          this.#emit("disconnected");
          break;
        case "reconnect":
          // After refused tries the client reports the one reconnect once per try.
          if (this.#connected) break;
          this.#connected = true;
          lastError = undefined;
          logger.info({ server: status.server }, "reconnected to NATS");
          this.#emit("reconnected");
          break;
        case "error":
          if (status.error.message !== lastError) logger.error({ reason: status.error.message, ...describeAccess(this.#access) }, "NATS error");
          lastError = status.error.message;
          break;
        default:
          break;
      }
    }
    this.#connected = false;
    if (this.#closing) return;
    // The client gives up only on what no retry fixes (a credentials file it could not read when
    // it reconnected, say); the owner decides what to do without NATS for good.
    logger.error({ reason: (await nc.closed())?.message, ...describeAccess(this.#access) }, "the NATS connection closed for good");
    this.#emit("lost");
  }

  #emit(event: LinkEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
