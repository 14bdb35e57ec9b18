// Pushes an Envoy leaves unanswered. Envoy holds back the ACK of clusters while those it added
// warm (waiting for their endpoints, or for DNS), and of listeners while their routes do; nothing
// of that type reaches it meanwhile, and routes wait for the clusters. Envoy gives up waiting
// after its initial fetch timeout (15 s by default) and only says so in its own log: a push left
// unanswered for long is logged here too, once, with what to look at. What is in flight is the
// streams' own state (AdsStream.unanswered()); this only remembers what it logged.
import type { Logger } from "pino";
import { typeName } from "./ads/resources.js";
import type { AdsEvents } from "./ads/server.js";
import type { AdsStream } from "./ads/stream.js";

const UNANSWERED =
  "no answer to a push: Envoy holds it back while clusters or listeners it added warm (see its log), or the replica has not written it yet (envoyage_xds_writes_queued); later config waits";

/** How long a push may stay unanswered before it is logged. */
export const UNANSWERED_AFTER_MS = 5_000;
/** How often the replica checks its streams (main.ts runs this check and UnrequestedEndpoints'). */
export const CHECK_EVERY_MS = 1_000;
/** Pushes logged one by one per check; the rest of a fleet in the same state is one line. */
export const LOGGED_PER_CHECK = 10;

interface Reported {
  nonce: string;
  version: string;
  sentAt: number;
  /** Logged on its own line (its answer is logged too), or counted in a summary line. */
  alone: boolean;
}

export class UnansweredPushes {
  readonly #logger: Logger;
  readonly #streams: () => Iterable<AdsStream>;
  /** Per stream and type, the push already reported (logged or counted). */
  readonly #reported = new Map<AdsStream, Map<string, Reported>>();
  #lastCheck = performance.now();

  constructor(logger: Logger, streams: () => Iterable<AdsStream>) {
    this.#logger = logger;
    this.#streams = streams;
  }

  /**
   * Logs each push unanswered for UNANSWERED_AFTER_MS by `now`, once. Not right after the event
   * loop lagged: ACKs that arrived meanwhile are still unread.
   */
  check(now: number): void {
    const lagged = now - this.#lastCheck > 3 * CHECK_EVERY_MS;
    this.#lastCheck = now;
    if (lagged) return;
    let counted = 0;
    for (const stream of this.#streams()) {
      for (const push of stream.unanswered()) {
        if (now - push.sentAt < UNANSWERED_AFTER_MS || this.#reported.get(stream)?.get(push.typeUrl)?.nonce === push.nonce) continue;
        const alone = counted++ < LOGGED_PER_CHECK;
        let types = this.#reported.get(stream);
        if (!types) this.#reported.set(stream, (types = new Map()));
        types.set(push.typeUrl, { nonce: push.nonce, version: push.version, sentAt: push.sentAt, alone });
        if (alone) {
          const fields = { node: stream.nodeId || undefined, type: typeName(push.typeUrl), version: push.version, seconds: Math.round((now - push.sentAt) / 1000) };
          this.#logger.warn(fields, UNANSWERED);
        }
      }
    }
    if (counted > LOGGED_PER_CHECK) this.#logger.warn({ more: counted - LOGGED_PER_CHECK }, "as many more pushes got no answer, not listed one by one");
  }

  /** The answers to reported pushes: logged for those logged one by one, then forgotten. */
  events(): Partial<AdsEvents> {
    const answered = (stream: AdsStream, typeUrl: string, nonce: string) => {
      const types = this.#reported.get(stream);
      const reported = types?.get(typeUrl);
      if (!types || reported?.nonce !== nonce) return;
      if (reported.alone) {
        const seconds = Math.round((performance.now() - reported.sentAt) / 1000);
        this.#logger.info({ node: stream.nodeId || undefined, type: typeName(typeUrl), version: reported.version, seconds }, "Envoy answered the push at last");
      }
      types.delete(typeUrl);
      if (types.size === 0) this.#reported.delete(stream);
    };
    return {
      ack: (stream, typeUrl, _version, nonce) => answered(stream, typeUrl, nonce),
      nack: (stream, typeUrl, _version, nonce) => answered(stream, typeUrl, nonce),
      disconnect: (stream) => void this.#reported.delete(stream),
    };
  }
}
