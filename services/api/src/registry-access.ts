// Access to the registry for request handlers: fails fast with 503 while NATS is down or the
// bucket is not bound yet, turns NATS failures (timeouts, no leader, lost connection) into 503
// instead of a hang or a 500, and the bucket's own limits into 413 and 507, which a retry does
// not change.
import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  InvalidArgumentError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/nats-core";
import { TIMED_OUT, within, type NatsLink } from "@envoyage/registry";
import { ApiError, unavailable } from "./errors.js";
import type { ServiceStore } from "./service-store.js";
import { TurnBatcher } from "./turn-batcher.js";

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

/** A NATS failure in words: "jetstream is not enabled" is what a cluster without a stream leader answers. */
function describeNatsFailure(error: Error): string {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof NoRespondersError) {
      return "no JetStream server answered for the bucket (a NATS cluster electing the bucket's leader does not, for a few seconds; nor does a server without JetStream); retry";
    }
  }
  return error.message;
}

const MESSAGE_TOO_LARGE = 10054;
const STORE_FAILED = 10077;
const ACCOUNT_LIMIT = 10002;

/**
 * A refusal of the bucket's or the account's own limits, which a retry does not change: a value
 * over the bucket's max_value_size (the API's body limit is the first guard, a bucket made by
 * hand can be tighter), a bucket at its max_bytes or max_msgs (discard new), an account at its
 * JetStream storage limit. A server at its own store limit (10023) is left a 503: in a cluster
 * the stream's leader steps down, and the write succeeds on the next one.
 */
function bucketRefusal(error: unknown): ApiError | undefined {
  for (let e = error; e instanceof Error; e = e.cause) {
    // The NATS server's own limit on a message (max_payload, 1 MiB by default), which
    // API_BODY_LIMIT may exceed: the client refuses to send the write at all.
    if (e instanceof InvalidArgumentError && /max_payload/.test(e.message)) {
      return new ApiError(413, "value_too_large", `the NATS server refuses messages this large (its max_payload): "${e.message}"`);
    }
    if (!(e instanceof JetStreamApiError)) continue;
    if (e.code === MESSAGE_TOO_LARGE) {
      return new ApiError(413, "value_too_large", `the bucket refuses values this large (its max value size): NATS answered "${e.message}"`);
    }
    if (e.code === ACCOUNT_LIMIT || (e.code === STORE_FAILED && /^maximum (bytes|messages) exceeded/.test(e.message))) {
      return new ApiError(
        507,
        "registry_full",
        `the bucket has no room for this write, a delete included (it writes a marker): NATS answered "${e.message}"; an operator must raise the bucket's or the account's limits, or purge`,
      );
    }
  }
  return undefined;
}

export class RegistryAccess {
  readonly #link: NatsLink;
  readonly #deadlineMs: number;
  #store: ServiceStore | undefined;
  readonly #turns = new TurnBatcher();

  /** `deadlineMs` bounds a whole operation, however many NATS requests it makes. */
  constructor(link: NatsLink, deadlineMs: number) {
    this.#link = link;
    this.#deadlineMs = deadlineMs;
  }

  bind(store: ServiceStore): void {
    this.#store = store;
  }

  /** Ready = connected to NATS, bound to the bucket, and its view loaded (which services list which domain). */
  get ready(): boolean {
    return this.#store !== undefined && this.#link.isConnected && this.#store.loaded;
  }

  /**
   * Runs `operation` within the deadline. `abandoned` is aborted when the deadline passes: a
   * write that has not started by then (waiting for another write of the same service, or
   * between attempts) never does.
   */
  async run<T>(operation: (store: ServiceStore, abandoned: AbortSignal) => Promise<T>): Promise<T> {
    if (!this.#store) throw unavailable("not connected to the bucket yet");
    if (!this.#link.isConnected) throw unavailable("disconnected from NATS; reconnecting");
    const store = this.#store;
    const deadline = new AbortController();
    let result: T | typeof TIMED_OUT;
    try {
      result = await within(this.#turns.run(() => operation(store, deadline.signal)), this.#deadlineMs);
    } catch (error) {
      if (error instanceof ApiError) throw error;
      const refusal = bucketRefusal(error);
      if (refusal) throw refusal;
      if (isNatsFailure(error)) throw unavailable(describeNatsFailure(error as Error));
      throw error;
    }
    // A write already sent to NATS at the deadline may yet land; the client, told 503, retries
    // (a conditional write may then find its own, and answer 412).
    if (result === TIMED_OUT) {
      deadline.abort(unavailable(`no answer from NATS within ${this.#deadlineMs} ms`));
      throw deadline.signal.reason;
    }
    return result;
  }
}
