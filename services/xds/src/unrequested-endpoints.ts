// Envoys that acknowledged clusters but never asked for the endpoints of some of them
// (AdsStream.endpointsNotAskedFor): their listeners and routes wait for those endpoints, for
// good. The usual cause is an operator's bootstrap with a static cluster named like a service,
// which Envoy keeps instead of the replica's, saying so only at debug level. Logged once per
// Envoy stream, with the clusters and what to change.
import type { Logger } from "pino";
import type { AdsStream } from "./ads/stream.js";

/** How long clusters may go without an endpoint request before it is logged. */
const UNREQUESTED_AFTER_MS = 5_000;
/** Clusters named in the line; the rest are counted. */
const NAMED = 10;

const MESSAGE =
  "Envoy acknowledged clusters but never asked for their endpoints, so its listeners and routes wait: a static cluster of its bootstrap probably has the same name (keep a _ in static cluster names)";

export class UnrequestedEndpoints {
  readonly #logger: Logger;
  readonly #streams: () => Iterable<Pick<AdsStream, "nodeId" | "endpointsNotAskedFor">>;
  /** Per stream: since when clusters went unrequested, and whether that was logged. */
  readonly #seen = new WeakMap<object, { since: number; logged: boolean }>();

  constructor(logger: Logger, streams: () => Iterable<Pick<AdsStream, "nodeId" | "endpointsNotAskedFor">>) {
    this.#logger = logger;
    this.#streams = streams;
  }

  check(now: number): void {
    for (const stream of this.#streams()) {
      const clusters = [...stream.endpointsNotAskedFor()];
      if (clusters.length === 0) {
        this.#seen.delete(stream);
        continue;
      }
      const seen = this.#seen.get(stream) ?? { since: now, logged: false };
      this.#seen.set(stream, seen);
      if (seen.logged || now - seen.since < UNREQUESTED_AFTER_MS) continue;
      seen.logged = true;
      const more = clusters.length - NAMED;
      this.#logger.warn({ node: stream.nodeId || undefined, clusters: clusters.slice(0, NAMED), ...(more > 0 && { more }) }, MESSAGE);
    }
  }
}
