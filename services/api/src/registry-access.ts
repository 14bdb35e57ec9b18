// Access to the registry for request handlers: fails fast with 503 while NATS is down or the
// bucket is not bound yet, and turns NATS failures (timeouts, no leader, lost connection) into
// 503 instead of a hang or a 500.
import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/nats-core";
import type { NatsLink } from "@envoyage/registry";
import { ApiError, unavailable } from "./errors.js";
import type { ServiceStore } from "./service-store.js";

const NATS_FAILURES = [
  TimeoutError,
  NoRespondersError,
  ClosedConnectionError,
  DrainingConnectionError,
  ConnectionError,
  RequestError,
  JetStreamApiError,
  JetStreamError,
];

/**
 * Whether `error`, or anything that caused it, is a NATS failure. (While a clustered stream
 * elects a leader, a write fails as "jetstream is not enabled", caused by "no responders".)
 */
function isNatsFailure(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) {
    if (NATS_FAILURES.some((type) => e instanceof type)) return true;
  }
  return false;
}

export class RegistryAccess {
  readonly #link: NatsLink;
  #store: ServiceStore | undefined;

  constructor(link: NatsLink) {
    this.#link = link;
  }

  bind(store: ServiceStore): void {
    this.#store = store;
  }

  /** Ready = connected to NATS and bound to the bucket. */
  get ready(): boolean {
    return this.#store !== undefined && this.#link.isConnected;
  }

  async run<T>(operation: (store: ServiceStore) => Promise<T>): Promise<T> {
    if (!this.#store) throw unavailable("not connected to the bucket yet");
    if (!this.#link.isConnected) throw unavailable("disconnected from NATS; reconnecting");
    try {
      return await operation(this.#store);
    } catch (error) {
      if (error instanceof ApiError) throw error;
      if (isNatsFailure(error)) throw unavailable((error as Error).message);
      throw error;
    }
  }
}
