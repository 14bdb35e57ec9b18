// The API's view of the registry bucket (records and claims), followed with a KV watch. It lets a
// PUT skip reading before writing: the write is a compare-and-set against the revision the view
// holds, so a view that is behind costs a retry on the checked path, never a wrong write. It also
// says which services list a domain, which claims defer to (domain-claims.ts): a view that is
// behind there can refuse a PUT (409) that a later one would take.
import { addToIndex, BucketWatcher, claimHolder, decodeRecord, formatProblem, parseKey, removeFromIndex, type BucketEntry, type BucketWatcherOptions, type ServiceRecord } from "@envoyage/registry";
import { unavailable } from "./errors.js";

export interface ViewedService {
  revision: number;
  /** Undefined when the stored value is not a valid record. */
  record: ServiceRecord | undefined;
  /** Why the stored value is not a valid record. */
  problem: string | undefined;
}

export interface ViewedClaim {
  holder: string;
  revision: number;
  /** Server time of the claim. */
  created: Date;
}

/** A stored value as a service: its record, or why it is not a valid one. */
export function viewedService(revision: number, value: Uint8Array): ViewedService {
  const decoded = decodeRecord(value);
  return decoded.ok
    ? { revision, record: decoded.record, problem: undefined }
    : { revision, record: undefined, problem: formatProblem(decoded.problem) };
}

export class RegistryView {
  readonly #services = new Map<string, ViewedService>();
  /** The services' names in order, for listing: sorted again only after a service came or went. */
  #sortedNames: string[] | undefined;
  readonly #claims = new Map<string, ViewedClaim>();
  /** domain → the services whose latest record lists it (a valid one). */
  readonly #listers = new Map<string, Set<string>>();
  /** Services this API deleted (noteDelete), by the revision deleted, until the watch passes it. */
  readonly #deletedAt = new Map<string, number>();
  readonly #watcher: BucketWatcher;
  #loaded = false;
  /** Counts the bucket's re-creations: a write begun before one may have landed in the deleted bucket. */
  #generation = 0;
  readonly #firstLoad = Promise.withResolvers<void>();

  constructor(options: Omit<BucketWatcherOptions, "handlers">) {
    this.#watcher = new BucketWatcher({
      ...options,
      handlers: {
        entry: (entry) => this.#apply(entry),
        loaded: () => {
          this.#loaded = true;
          this.#firstLoad.resolve();
        },
        recreated: () => {
          // Until the new bucket is loaded, writes take the checked path.
          this.#loaded = false;
          this.#generation++;
          this.#services.clear();
          this.#sortedNames = undefined;
          this.#claims.clear();
          this.#listers.clear();
          this.#deletedAt.clear();
        },
      },
    });
  }

  /** True once the bucket's state has been loaded; until then callers take the checked path. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** Resolves once the bucket's state has first been loaded. */
  get firstLoaded(): Promise<void> {
    return this.#firstLoad.promise;
  }

  /** The last revision of the bucket the view applied. */
  get revision(): number {
    return this.#watcher.revision;
  }

  start(): Promise<void> {
    return this.#watcher.start();
  }

  stop(): Promise<void> {
    return this.#watcher.stop();
  }

  service(name: string): ViewedService | undefined {
    return this.#services.get(name);
  }

  /** The services whose latest record lists `domain`; 503 until the view is loaded, when it cannot say. */
  servicesListing(domain: string): string[] {
    if (!this.#loaded) throw unavailable("the registry is still loading; retry");
    return [...(this.#listers.get(domain) ?? [])];
  }

  /** Services in name order: those named after `after` (all when undefined), the first `count` of them. */
  services(after?: string, count = Infinity): (ViewedService & { name: string })[] {
    const names = (this.#sortedNames ??= [...this.#services.keys()].sort());
    const start = after === undefined ? 0 : firstAfter(names, after);
    return names.slice(start, start + count).map((name) => ({ name, ...this.#services.get(name)! }));
  }

  claim(domain: string): ViewedClaim | undefined {
    return this.#claims.get(domain);
  }

  /** Every revision of `key` still in the bucket's history, newest first (direct gets: no consumer left behind). */
  async history(key: string): Promise<BucketEntry[]> {
    if (!this.#loaded) throw unavailable("the registry is still loading; retry");
    return this.#watcher.history(key);
  }

  /** The bucket's generation, to give noteWrite() and noteDelete(): taken before the write. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * A write this API made, applied before its watch event arrives (read your writes). Not if the
   * bucket was created again since the write began (`generation`): the write may have gone to
   * the deleted bucket, and its revision, of the old one, would stand for a service the new one
   * does not have until the new bucket's revisions passed it.
   */
  noteWrite(name: string, revision: number, record: ServiceRecord, generation: number): void {
    if (generation !== this.#generation) return;
    // Already delivered by the watch, and maybe deleted since: noting it again would revive it.
    if (revision <= this.#watcher.revision) return;
    const current = this.#services.get(name);
    if (current && current.revision >= revision) return;
    this.#setService(name, { revision, record, problem: undefined });
  }

  /**
   * A delete this API made, of the record at `revision`, applied before its watch event arrives
   * (read your writes). Until the watch has passed that revision it may still deliver it, which
   * must not bring the service back.
   */
  noteDelete(name: string, revision: number, generation: number): void {
    if (generation !== this.#generation) return;
    const current = this.#services.get(name);
    if (current && current.revision > revision) return; // written again since
    this.#setService(name, undefined);
    if (revision > this.#watcher.revision) this.#deletedAt.set(name, revision);
  }

  #apply(entry: BucketEntry): void {
    this.#applyEntry(entry);
    for (const [name, revision] of this.#deletedAt) if (revision <= entry.revision) this.#deletedAt.delete(name);
  }

  #applyEntry(entry: BucketEntry): void {
    const key = parseKey(entry.key);
    if (key.kind === "service") {
      const current = this.#services.get(key.name);
      if (current && current.revision >= entry.revision) return;
      if ((this.#deletedAt.get(key.name) ?? 0) >= entry.revision) return;
      if (!entry.value) {
        this.#setService(key.name, undefined);
        return;
      }
      this.#setService(key.name, viewedService(entry.revision, entry.value));
    } else if (key.kind === "claim") {
      if (entry.value) this.#claims.set(key.domain, { holder: claimHolder(entry.value), revision: entry.revision, created: entry.created });
      else this.#claims.delete(key.domain);
    }
  }

  #setService(name: string, value: ViewedService | undefined): void {
    for (const domain of this.#services.get(name)?.record?.domains ?? []) removeFromIndex(this.#listers, domain, name);
    if (!value) {
      if (this.#services.delete(name)) this.#sortedNames = undefined;
      return;
    }
    if (!this.#services.has(name)) this.#sortedNames = undefined;
    this.#services.set(name, value);
    for (const domain of value.record?.domains ?? []) addToIndex(this.#listers, domain, name);
  }
}

/** The index of the first of the sorted `names` that sorts after `after` (names.length if none). */
function firstAfter(names: readonly string[], after: string): number {
  let low = 0;
  let high = names.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (names[middle]! > after) high = middle;
    else low = middle + 1;
  }
  return low;
}
