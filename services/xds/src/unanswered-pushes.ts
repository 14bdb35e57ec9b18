// Pushes an Envoy leaves unanswered. Envoy holds back the ACK of clusters while those it added
// warm (waiting for their endpoints, or for DNS), and of listeners while their routes do; nothing
// of that type reaches it meanwhile, and routes wait for the clusters. Envoy gives up waiting
// after its initial fetch timeout (15 s by default) and only says so in its own log: a push left
// unanswered for long is logged here too, once, with what to look at.
import type { Logger } from "pino";
import { typeName } from "./ads/resources.js";
import type { AdsEvents } from "./ads/server.js";
import type { AdsStream } from "./ads/stream.js";

/** How long a push may stay unanswered before it is logged. */
export const UNANSWERED_AFTER_MS = 5_000;
const CHECK_EVERY_MS = 1_000;

interface Waiting {
  version: string;
  since: number;
  logged: boolean;
}

export class UnansweredPushes {
  readonly #logger: Logger;
  /** Per stream, its pushes still unanswered, by type. */
  readonly #waiting = new Map<AdsStream, Map<string, Waiting>>();
  #timer: NodeJS.Timeout | undefined;

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

  /** Logs each push unanswered for UNANSWERED_AFTER_MS by `now`, once. */
  check(now: number): void {
    for (const [stream, types] of this.#waiting) {
      for (const [typeUrl, waiting] of types) {
        if (waiting.logged || now - waiting.since < UNANSWERED_AFTER_MS) continue;
        waiting.logged = true;
        this.#logger.warn(
          { node: stream.nodeId || undefined, type: typeName(typeUrl), version: waiting.version, seconds: Math.round((now - waiting.since) / 1000) },
          "Envoy has not answered a push: it holds it back while clusters or listeners it added warm (see its log), and later config waits",
        );
      }
    }
  }

  events(): Partial<AdsEvents> {
    const answered = (stream: AdsStream, typeUrl: string) => {
      const types = this.#waiting.get(stream);
      const waiting = types?.get(typeUrl);
      if (!types || !waiting) return;
      if (waiting.logged) {
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
        types.set(typeUrl, { version: body.version, since: performance.now(), logged: false });
      },
      ack: (stream, typeUrl) => answered(stream, typeUrl),
      nack: (stream, typeUrl) => answered(stream, typeUrl),
      disconnect: (stream) => void this.#waiting.delete(stream),
    };
  }
}
