// Service records in the KV bucket, and with them their domain claims (domain-claims.ts): every
// write the API makes (it reads the bucket through its views, registry-view.ts and status-view.ts).
//
// A PUT first claims each of the record's domains, then writes the record, then releases the
// domains the previous revision had and this one dropped. The replicas apply the same claims, so
// what the API accepted is what Envoy serves.
import { setTimeout as sleep } from "node:timers/promises";
import type { KV, KvEntry } from "@nats-io/kv";
import { claimKey, encodeRecord, parseKey, serviceKey, SERVICE_PREFIX, type ServiceRecord } from "@envoyage/registry";
import { DomainClaims } from "./domain-claims.js";
import { ServiceLocks } from "./service-locks.js";
import { alreadyExists, ApiError, revisionMismatch } from "./errors.js";
import { isLive, isWrongRevision } from "./kv-entries.js";
import { viewedService, type RegistryView } from "./registry-view.js";

export interface StoredService {
  name: string;
  revision: number;
  /** Undefined when the stored value is not a valid record (written straight to NATS). */
  record: ServiceRecord | undefined;
  problem: string | undefined;
}

export interface WriteResult {
  service: StoredService & { record: ServiceRecord };
  created: boolean;
}

/** A page of the list: the services named after `after` (in name order), `limit` at most. */
export interface ListPage {
  after?: string;
  limit?: number;
}

/**
 * `If-Match`: the revisions it may be at (any of them), or "*" for "whatever revision, but it must
 * exist"; "absent" (`If-None-Match: *`): only if it does not exist.
 */
export type Precondition = readonly number[] | "*" | "absent" | undefined;

const LIST_CONCURRENCY = 64;
/** Reads and compare-and-set writes a PUT or DELETE without a revision to match makes while others keep writing the service. */
const WRITE_ATTEMPTS = 5;
/** How long revision() leaves a stream that did not answer alone. */
const STREAM_QUIET_MS = 2_000;

function toStored(name: string, entry: KvEntry): StoredService {
  return { name, ...viewedService(entry.revision, entry.value) };
}

export class ServiceStore {
  readonly #kv: KV;
  readonly #view: RegistryView;
  /** Until then revision() answers from the view: the stream did not answer lately. */
  #streamQuietUntil = 0;
  #revisionRead: Promise<number> | undefined;
  readonly #claims: DomainClaims;
  readonly #locks = new ServiceLocks();

  constructor(kv: KV, view: RegistryView) {
    this.#kv = kv;
    this.#view = view;
    this.#claims = new DomainClaims(kv, view);
  }

  /** Whether the view has loaded the bucket: until then writes that need it answer 503. */
  get loaded(): boolean {
    return this.#view.loaded;
  }

  /**
   * The bucket's latest revision (every write counts, claims included). While its stream cannot
   * say (a cluster electing its leader, when no write lands either), the last one the view
   * applied: sync status stays readable through a failover, and is not asked again for
   * STREAM_QUIET_MS (each try waits NATS_TIMEOUT_MS).
   */
  revision(): Promise<number> {
    if (this.#view.loaded && performance.now() < this.#streamQuietUntil) return Promise.resolve(this.#view.revision);
    // One read at a time: requests arriving while it waits share it instead of waiting on their own.
    this.#revisionRead ??= this.#readRevision().finally(() => (this.#revisionRead = undefined));
    return this.#revisionRead;
  }

  async #readRevision(): Promise<number> {
    try {
      return (await this.#kv.status()).streamInfo.state.last_seq;
    } catch (error) {
      if (!this.#view.loaded) throw error;
      this.#streamQuietUntil = performance.now() + STREAM_QUIET_MS;
      return this.#view.revision;
    }
  }

  async get(name: string): Promise<StoredService | undefined> {
    const entry = await this.#kv.get(serviceKey(name));
    return isLive(entry) ? toStored(name, entry) : undefined;
  }

  /**
   * Services in name order, from the view once it is loaded: listing the bucket's keys creates a
   * consumer that nats-server keeps for minutes, and a dashboard polling the list filled the
   * stream's consumer limit (writes and replicas' watches then failed). A page holds the services
   * named after `after`, `limit` of them at most; `more` says whether others follow.
   */
  async list(page: ListPage = {}): Promise<{ services: StoredService[]; more: boolean }> {
    const limit = page.limit ?? Infinity;
    if (this.#view.loaded) {
      // One more than a page: whether others follow, without copying every service after it.
      const services = this.#view.services(page.after, limit + 1);
      return { services: services.slice(0, limit), more: services.length > limit };
    }
    const names: string[] = [];
    for await (const key of await this.#kv.keys(`${SERVICE_PREFIX}>`)) {
      // Keys with a name the API refuses (written with the CLI) are no services: the replicas ignore them too.
      const parsed = parseKey(key);
      if (parsed.kind === "service" && (page.after === undefined || parsed.name > page.after)) names.push(parsed.name);
    }
    names.sort();
    const services: StoredService[] = [];
    for (let i = 0; i < names.length && services.length <= limit; i += LIST_CONCURRENCY) {
      const batch = await Promise.all(names.slice(i, i + LIST_CONCURRENCY).map((name) => this.get(name)));
      for (const service of batch) if (service) services.push(service);
    }
    return { services: services.slice(0, limit), more: services.length > limit };
  }

  /** `abandoned`: the client was answered meanwhile (RegistryAccess's deadline); nothing more is written. */
  put(name: string, record: ServiceRecord, precondition: Precondition, abandoned?: AbortSignal): Promise<WriteResult> {
    return this.#locks.run(name, async () => {
      const generation = this.#view.generation;
      if (precondition === undefined) {
        const written = await this.#putAsViewed(name, record, generation);
        if (written) return written;
      }
      for (let attempt = 1; ; attempt++) {
        const result = await this.#putChecked(name, record, precondition);
        if (result) {
          this.#view.noteWrite(name, result.service.revision, record, generation);
          return result;
        }
        if (attempt === WRITE_ATTEMPTS) throw contended(name);
        // Another writer (another API, the CLI) wrote the service between the read and the write.
        await backOff(attempt);
        abandoned?.throwIfAborted();
      }
    }, abandoned);
  }

  /**
   * The common cases without reading first: the view says every domain of the record is free (no
   * other record lists it) or held by this service already, which lists it. Free domains are
   * claimed with compare-and-set creates (one round trip for all), then the record is written
   * compare-and-set against the revision the view holds; a replacement that keeps its domains is
   * a single write. Undefined when the view cannot vouch (not loaded, a domain held or listed by
   * another service) or turns out to be behind: the claims taken here are given back and the
   * checked path decides.
   */
  async #putAsViewed(name: string, record: ServiceRecord, generation: number): Promise<WriteResult | undefined> {
    const view = this.#view;
    if (!view.loaded) return undefined;
    const existing = view.service(name);
    // An invalid latest value: the domains to give back are its last good revision's (history).
    if (existing && !existing.record) return undefined;
    const free: string[] = [];
    // The checked path decides a free domain another service's record lists, one held by another
    // service, and one held by this service without its record listing it.
    for (const domain of record.domains) {
      const holder = view.claim(domain)?.holder;
      if (holder === undefined) {
        if (this.#claims.listerOtherThan(domain, name) !== undefined) return undefined;
        free.push(domain);
      } else if (holder !== name || !existing?.record?.domains.includes(domain)) return undefined;
    }
    const { taken, failure } = await this.#claims.createAll(free, name);
    try {
      if (failure) throw failure;
      const value = encodeRecord(record);
      const revision = existing ? await this.#kv.update(serviceKey(name), value, existing.revision) : await this.#kv.create(serviceKey(name), value);
      view.noteWrite(name, revision, record, generation);
      await this.#claims.giveBack((existing?.record?.domains ?? []).filter((d) => !record.domains.includes(d)), name);
      return { service: { name, revision, record, problem: undefined }, created: !existing };
    } catch (error) {
      if (!isWrongRevision(error)) {
        this.#claims.releaseLater(taken, name);
        throw error;
      }
      await this.#claims.release(taken, name); // the view was behind: the checked path starts from the bucket
      return undefined;
    }
  }

  /**
   * Reads the record and its claims first, then claims what is missing and writes, with
   * compare-and-set against what it read: undefined when another writer wrote the service in
   * between (the claims it took are given back first), to be started over — written blindly, a
   * record could list a domain whose claim the other write had meanwhile given up.
   */
  async #putChecked(name: string, record: ServiceRecord, precondition: Precondition): Promise<WriteResult | undefined> {
    const key = serviceKey(name);
    // One round trip for every read: the record and the claims of all its domains.
    const [current, ...claims] = await Promise.all([
      this.#kv.get(key),
      ...record.domains.map((domain) => this.#kv.get(claimKey(domain))),
    ]);
    const existing = isLive(current) ? toStored(name, current) : undefined;
    checkPrecondition(precondition, existing?.revision);

    const listed = await this.#claims.listedBy(current);
    const taken = await this.#claims.claimAll(record.domains, claims, name, listed);
    try {
      const value = encodeRecord(record);
      let revision: number;
      let created = false;
      if (precondition === "absent") {
        // checkPrecondition made sure it did not exist.
        revision = await this.#kv.create(key, value).catch(async (error: unknown) => {
          throw isWrongRevision(error) ? alreadyExists(await this.#storedRevision(key)) : error;
        });
        created = true;
      } else {
        try {
          revision = existing ? await this.#kv.update(key, value, existing.revision) : await this.#kv.create(key, value);
          created = !existing;
        } catch (error) {
          if (!isWrongRevision(error)) throw error;
          // Written meanwhile: read again, and If-Match ("*", or revisions) judges what is there
          // now (a 412 naming a revision the client sent would be no answer).
          await this.#claims.release(taken, name);
          return undefined;
        }
      }
      await this.#claims.giveBack(listed.filter((d) => !record.domains.includes(d)), name);
      return { service: { name, revision, record, problem: undefined }, created };
    } catch (error) {
      this.#claims.releaseLater(taken, name);
      throw error;
    }
  }

  /** Deletes a service; false when there is none. `abandoned`: as for put(). */
  delete(name: string, precondition: Precondition, abandoned?: AbortSignal): Promise<boolean> {
    return this.#locks.run(name, () => this.#delete(name, precondition, abandoned), abandoned);
  }

  async #delete(name: string, precondition: Precondition, abandoned: AbortSignal | undefined): Promise<boolean> {
    const key = serviceKey(name);
    const generation = this.#view.generation;
    for (let attempt = 1; ; attempt++) {
      const current = await this.#kv.get(key);
      if (!isLive(current)) {
        checkPrecondition(precondition, undefined);
        return false;
      }
      checkPrecondition(precondition, current.revision);
      // Read before deleting, as a PUT does: for an invalid latest value this reads its history,
      // and a failure answered after the delete would tell the client that it had not happened.
      const listed = await this.#claims.listedBy(current);
      try {
        await this.#kv.delete(key, { previousSeq: current.revision });
      } catch (error) {
        if (!isWrongRevision(error)) throw error;
        // Written meanwhile: read again, and If-Match judges what is there now. Without one, the
        // client asked to delete whatever is stored: delete the newer record (compare-and-set
        // still, for its claims to be the ones given back).
        if (attempt === WRITE_ATTEMPTS) throw contended(name);
        // A moment for the other writer to be done (or a read served by a lagging stream replica to catch up).
        await backOff(attempt);
        abandoned?.throwIfAborted();
        continue;
      }
      this.#view.noteDelete(name, current.revision, generation);
      await this.#claims.giveBack(listed, name);
      return true;
    }
  }

  /** What is stored now, after a compare-and-set lost to a writer that got there first (for its 412). */
  async #storedRevision(key: string): Promise<number | undefined> {
    const now = await this.#kv.get(key).catch(() => null); // unknown: the 412 still stands
    return isLive(now) ? now.revision : undefined;
  }
}

/** A moment for another writer to be done, longer with every attempt, jittered so racers part. */
const backOff = (attempt: number) => sleep(Math.random() * 10 * attempt);

const contended = (name: string) => new ApiError(409, "service_contended", `service "${name}" kept being written by others while this request wrote it; retry`);

function checkPrecondition(precondition: Precondition, current: number | undefined): void {
  if (precondition === undefined) return;
  if (precondition === "absent") {
    if (current !== undefined) throw alreadyExists(current);
    return;
  }
  if (precondition === "*") {
    if (current === undefined) throw new ApiError(412, "revision_mismatch", "If-Match: * but the service does not exist", { currentRevision: null });
    return;
  }
  if (current === undefined || !precondition.includes(current)) throw revisionMismatch(precondition, current);
}
