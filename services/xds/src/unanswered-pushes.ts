// Pushes an Envoy leaves unanswered. Envoy holds back the ACK of clusters while those it added
// warm (waiting for their endpoints, or for DNS), and of listeners while their routes do; nothing
// of that type reaches it meanwhile, and routes wait for the clusters. Envoy gives up waiting
// after its initial fetch timeout (15 s by default) and only says so in its own log: a push left
// unanswered for long is logged here too, once, with what to look at.
import type { Logger } from "pino";
import { typeName } from "./ads/resources.js";
import type { AdsEvents } from "./ads/server.js";
import type { AdsStream } from "./ads/stream.js";

const UNANSWERED =
  "no answer to a push: Envoy holds it back while clusters or listeners it added warm (see its log), or the replica has not written it yet (envoyage_xds_writes_queued); later config waits";

/** How long a push may stay unanswered before it is logged. */
export const UNANSWERED_AFTER_MS = 5_000;
const CHECK_EVERY_MS = 1_000;
/** Pushes logged one by one per check; the rest of a fleet in the same state is one line. */
export const LOGGED_PER_CHECK = 10;

interface Waiting {
  version: string;
  since: number;
  /** Logged on its own line (its answer is logged too), or counted in a summary line. */
  logged: "no" | "alone" | "counted";
}

export class UnansweredPushes {
  readonly #logger: Logger;
  /** Per stream, its pushes still unanswered, by type. */
  readonly #waiting = new Map<AdsStream, Map<string, Waiting>>();
  #timer: NodeJS.Timeout | undefined;
  #lastCheck = performance.now();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  start(): void {
    this.#timer = setInterval(() => this.check(performance.now()), CHECK_EVERY_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
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
    for (const [stream, types] of this.#waiting) {
      for (const [typeUrl, waiting] of types) {
        if (waiting.logged !== "no" || now - waiting.since < UNANSWERED_AFTER_MS) continue;
        if (counted++ < LOGGED_PER_CHECK) {
          waiting.logged = "alone";
          this.#logger.warn(
            { node: stream.nodeId || undefined, type: typeName(typeUrl), version: waiting.version, seconds: Math.round((now - waiting.since) / 1000) },
            UNANSWERED,
          );
        } else waiting.logged = "counted";
      }
    }
    if (counted > LOGGED_PER_CHECK) this.#logger.warn({ more: counted - LOGGED_PER_CHECK }, "as many more pushes got no answer, not listed one by one");
  }

  events(): Partial<AdsEvents> {
    const answered = (stream: AdsStream, typeUrl: string) => {
      const types = this.#waiting.get(stream);
      const waiting = types?.get(typeUrl);
      if (!types || !waiting) return;
      if (waiting.logged === "alone") {
        const seconds = Math.round((performance.now() - waiting.since) / 1000);
        this.#logger.info({ node: stream.nodeId || undefined, type: typeName(typeUrl), version: waiting.version, seconds }, "Envoy answered the push at last");
      }
      types.delete(typeUrl);
      if (types.size === 0) this.#waiting.delete(stream);
    };
    return {
      push: (stream, typeUrl, body) => {
        let types = this.#waiting.get(stream);
        if (!types) this.#waiting.set(stream, (types = new Map()));
        types.set(typeUrl, { version: body.version, since: performance.now(), logged: "no" });
      },
      ack: (stream, typeUrl) => answered(stream, typeUrl),
      nack: (stream, typeUrl) => answered(stream, typeUrl),
      disconnect: (stream) => void this.#waiting.delete(stream),
    };
  }
}
