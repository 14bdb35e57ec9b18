// History lookups for services whose latest value is invalid, or conflicts with another
// service's: a valid revision before it keeps serving (the last good config, see registry.ts).
// A lookup is a few JetStream requests (one per revision of the key, BucketWatcher.history), so
// only a few run at once, and a failing one backs off. Started all together, a burst of hundreds
// of invalid writes once overran nats-server's JetStream API queue; the lookups timed out and
// retried every 500 ms for good.
import { setTimeout as sleep } from "node:timers/promises";
import { validRevisionsBefore, type BucketEntry } from "@envoyage/registry";
import type { Logger } from "pino";
import type { EffectiveRecord } from "./registry.js";

const CONCURRENCY = 4;
const RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;

interface Lookup {
  /** The clear() generation it was requested in: a lookup from before a clear() settles nothing. */
  generation: number;
  name: string;
  key: string;
  /** Revision of the latest value: the candidates are the valid ones before it. */
  latest: number;
}

export interface LastGoodLookupsOptions {
  /** Every revision of a key still in the bucket's history, newest first. */
  history(key: string): Promise<BucketEntry[]>;
  /** False once a newer write (or a delete) made the lookup moot. */
  wanted(name: string, latest: number): boolean;
  /**
   * A lookup ended, counted out of `pending` already: the valid revisions before `latest`, newest
   * first (none when moot: Registry.setHistory ignores a superseded one).
   */
  settled(name: string, latest: number, older: EffectiveRecord[]): void;
  logger: Logger;
}

export class LastGoodLookups {
  readonly #options: LastGoodLookupsOptions;
  readonly #queue: Lookup[] = [];
  readonly #running = new Set<Lookup>();
  #generation = 0;
  /** Aborted by clear(): a cleared lookup waiting out its backoff gives its slot back at once. */
  #cleared = new AbortController();

  constructor(options: LastGoodLookupsOptions) {
    this.#options = options;
  }

  /** Lookups queued or running, but for cleared ones: the replica is not ready while there are any. */
  get pending(): number {
    let running = 0;
    for (const lookup of this.#running) if (lookup.generation === this.#generation) running++;
    return this.#queue.length + running;
  }

  request(name: string, key: string, latest: number): void {
    this.#queue.push({ generation: this.#generation, name, key, latest });
    this.#next();
  }

  /** Drops every lookup queued or running: the replica stops, or the bucket was created again. */
  clear(): void {
    this.#generation++;
    this.#queue.length = 0;
    this.#cleared.abort();
    this.#cleared = new AbortController();
  }

  #next(): void {
    while (this.#running.size < CONCURRENCY && this.#queue.length > 0) {
      const lookup = this.#queue.shift()!;
      this.#running.add(lookup);
      void this.#run(lookup).then((older) => {
        this.#running.delete(lookup);
        if (lookup.generation === this.#generation) this.#options.settled(lookup.name, lookup.latest, older);
        this.#next();
      });
    }
  }

  async #run({ generation, name, key, latest }: Lookup): Promise<EffectiveRecord[]> {
    const { history, wanted, logger } = this.#options;
    const { signal } = this.#cleared;
    for (let delay = RETRY_MS; generation === this.#generation && wanted(name, latest); delay = Math.min(delay * 2, MAX_RETRY_MS)) {
      try {
        return validRevisionsBefore(await history(key), latest);
      } catch (error) {
        if (delay === RETRY_MS) logger.warn({ service: name, err: error }, "history lookup failed; retrying with backoff");
        await sleep(delay, undefined, { signal }).catch(() => undefined); // cleared: the loop ends
      }
    }
    return [];
  }
}
