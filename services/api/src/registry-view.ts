// The API's view of the registry bucket (records and claims), followed with a KV watch. It lets a
// PUT skip reading before writing: the write is a compare-and-set against the revision the view
// holds, so a view that is behind costs a retry on the checked path, never a wrong write.
import { BucketWatcher, claimHolder, decodeRecord, formatProblem, parseKey, type BucketEntry, type BucketWatcherOptions, type ServiceRecord } from "@envoyage/registry";

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


export class RegistryView {
  readonly #services = new Map<
    string,
    { revision: number; value: Uint8Array; record?: ServiceRecord | undefined; problem?: string | undefined; decoded?: boolean }
  >();
  readonly #claims = new Map<string, ViewedClaim>();
  readonly #watcher: BucketWatcher;
  #loaded = false;

  constructor(options: Omit<BucketWatcherOptions, "handlers">) {
    this.#watcher = new BucketWatcher({
      ...options,
      handlers: {
        entry: (entry) => this.#apply(entry),
        loaded: () => void (this.#loaded = true),
        recreated: () => {
          // Until the new bucket is loaded, writes take the checked path.
          this.#loaded = false;
          this.#services.clear();
          this.#claims.clear();
        },
      },
    });
  }

  /** True once the bucket's state has been loaded; until then callers take the checked path. */
  get loaded(): boolean {
    return this.#loaded;
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
    const entry = this.#services.get(name);
    if (!entry) return undefined;
    if (!entry.decoded) {
      const decoded = decodeRecord(entry.value);
      entry.record = decoded.ok ? decoded.record : undefined;
      entry.problem = decoded.ok ? undefined : formatProblem(decoded.problem);
      entry.decoded = true;
    }
    return { revision: entry.revision, record: entry.record, problem: entry.problem };
  }

  /** The services whose record lists `domain` (none known until the view is loaded); a scan, for rare paths. */
  servicesListing(domain: string): string[] {
    if (!this.#loaded) return [];
    return [...this.#services.keys()].filter((name) => this.service(name)!.record?.domains.includes(domain));
  }

  /** Every service, by name. */
  services(): (ViewedService & { name: string })[] {
    return [...this.#services.keys()].sort().map((name) => ({ name, ...this.service(name)! }));
  }

  claim(domain: string): ViewedClaim | undefined {
    return this.#claims.get(domain);
  }

  /** A write this API made, applied before its watch event arrives (read your writes). */
  noteWrite(name: string, revision: number, record: ServiceRecord): void {
    const current = this.#services.get(name);
    if (current && current.revision >= revision) return;
    this.#services.set(name, { revision, value: new Uint8Array(), record, decoded: true });
  }

  #apply(entry: BucketEntry): void {
    const key = parseKey(entry.key);
    if (key.kind === "service") {
      const current = this.#services.get(key.name);
      if (current && current.revision >= entry.revision) return;
      if (entry.value) this.#services.set(key.name, { revision: entry.revision, value: entry.value });
      else this.#services.delete(key.name);
    } else if (key.kind === "claim") {
      if (entry.value) this.#claims.set(key.domain, { holder: claimHolder(entry.value), revision: entry.revision, created: entry.created });
      else this.#claims.delete(key.domain);
    }
  }
}
