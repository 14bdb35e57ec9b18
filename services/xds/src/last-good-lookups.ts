// History lookups for services whose latest value is invalid, or conflicts with another
// service's: a valid revision before it keeps serving (the last good config, see registry.ts).
// A lookup is one direct get of the key's revisions (BucketWatcher.history), so a bounded number
// run at once, and a failing one backs off. Started all together, a burst of hundreds of invalid
// writes once overran nats-server's JetStream API queue; the lookups timed out and retried every
// 500 ms for good. A replica is not ready until its load's lookups are in: with thousands of bad
// records, four at a time took it 50 s to start, so past BULK_AT queued lookups all of them are
// answered from one read of every service key's history (a few requests for the whole stream).
import { setTimeout as sleep } from "node:timers/promises";
import { validRevisionsBefore, type BucketEntry } from "@envoyage/registry";
import type { Logger } from "pino";
import type { EffectiveRecord } from "./registry.js";

export const CONCURRENCY = 16;
/**
 * Queued lookups from which one read of every key's history answers them all. Reading a bucket
 * of 10,000 services with full history takes about as long as a thousand lookups one by one.
 */
export const BULK_AT = 1000;
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
  /** Every revision of every service key, by key, newest first; undefined when it cannot be read in one go. */
  histories?(): Promise<Map<string, BucketEntry[]> | undefined>;
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
  /** Lookups waiting for the read of every key's history, all of one generation (the queue's when taken). */
  readonly #bulk = new Set<Lookup>();
  #bulkGeneration = -1;
  /** The bucket or server cannot give every history in one go: one lookup per key from then on. */
  #noBulk = false;
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
    // Asked once per lookup a bulk read settles: counted, not walked through.
    const bulk = this.#bulkGeneration === this.#generation ? this.#bulk.size : 0;
    return this.#queue.length + running + bulk;
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
    if (this.#queue.length >= BULK_AT && this.#bulk.size === 0 && !this.#noBulk && this.#options.histories) {
      void this.#runBulk(this.#queue.splice(0));
    }
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

  /** Answers `lookups` from one read of every key's history; if it cannot be read so, queues them one by one. */
  async #runBulk(lookups: Lookup[]): Promise<void> {
    for (const lookup of lookups) this.#bulk.add(lookup);
    this.#bulkGeneration = this.#generation; // clear() empties the queue: what it held is of this one
    let histories: Map<string, BucketEntry[]> | undefined;
    try {
      histories = await this.#options.histories!();
      if (!histories) this.#noBulk = true;
    } catch (error) {
      this.#options.logger.warn({ err: error, lookups: lookups.length }, "reading every history at once failed; looking them up one by one");
    }
    for (const lookup of lookups) {
      this.#bulk.delete(lookup);
      if (lookup.generation !== this.#generation) continue;
      if (!histories) this.#queue.push(lookup);
      else {
        const { name, key, latest } = lookup;
        const older = this.#options.wanted(name, latest) ? validRevisionsBefore(histories.get(key) ?? [], latest) : [];
        this.#options.settled(name, latest, older);
      }
    }
    this.#next();
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
