// Service records and domain claims in the KV bucket: the API's only I/O besides HTTP.
//
// A PUT first claims each of the record's domains (domains.<domain> = service name, created
// with compare-and-set, so of two services racing for a domain exactly one wins), then writes
// the record, then releases the domains the previous revision had and this one dropped. A claim
// whose holder has since been deleted or rewritten without the domain is stale and may be taken
// over, again with compare-and-set. The replicas apply the same claims, so what the API accepted
// is what Envoy serves.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import { claimHolder, claimKey, decodeRecord, encodeRecord, formatProblem, parseKey, serviceKey, SERVICE_PREFIX, type ServiceRecord } from "@envoyage/registry";
import { alreadyExists, ApiError, domainConflict, revisionMismatch } from "./errors.js";
import type { RegistryView } from "./registry-view.js";

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

/**
 * `If-Match`: a revision number, or "*" for "whatever revision, but it must exist";
 * "absent" (`If-None-Match: *`): only if it does not exist.
 */
export type Precondition = number | "*" | "absent" | undefined;

const CLAIM_ATTEMPTS = 5;
/** A claim whose holder never got its record written (its PUT failed half way) expires after this. */
const ORPHAN_CLAIM_MS = 60_000;
const LIST_CONCURRENCY = 64;

function isLive(entry: KvEntry | null): entry is KvEntry {
  return entry !== null && entry.operation === "PUT";
}

function isWrongRevision(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence;
}

function holderOf(claim: KvEntry): string {
  return claimHolder(claim.value);
}

function toStored(name: string, entry: KvEntry): StoredService {
  const decoded = decodeRecord(entry.value);
  return decoded.ok
    ? { name, revision: entry.revision, record: decoded.record, problem: undefined }
    : { name, revision: entry.revision, record: undefined, problem: formatProblem(decoded.problem) };
}

export class ServiceStore {
  readonly #kv: KV;
  readonly #view: RegistryView;

  constructor(kv: KV, view: RegistryView) {
    this.#kv = kv;
    this.#view = view;
  }

  /** The bucket's latest revision (every write counts, claims included). */
  async revision(): Promise<number> {
    return (await this.#kv.status()).streamInfo.state.last_seq;
  }

  async get(name: string): Promise<StoredService | undefined> {
    const entry = await this.#kv.get(serviceKey(name));
    return isLive(entry) ? toStored(name, entry) : undefined;
  }

  async list(): Promise<StoredService[]> {
    const names: string[] = [];
    for await (const key of await this.#kv.keys(`${SERVICE_PREFIX}>`)) {
      // Keys with a name the API refuses (written with the CLI) are no services: the replicas ignore them too.
      const parsed = parseKey(key);
      if (parsed.kind === "service") names.push(parsed.name);
    }
    names.sort();
    const out: StoredService[] = [];
    for (let i = 0; i < names.length; i += LIST_CONCURRENCY) {
      const batch = await Promise.all(names.slice(i, i + LIST_CONCURRENCY).map((name) => this.get(name)));
      for (const service of batch) if (service) out.push(service);
    }
    return out;
  }

  async put(name: string, record: ServiceRecord, precondition: Precondition): Promise<WriteResult> {
    if (precondition === undefined) {
      const written = await this.#putAsViewed(name, record);
      if (written) return written;
    }
    const result = await this.#putChecked(name, record, precondition);
    this.#view.noteWrite(name, result.service.revision, record);
    return result;
  }

  /**
   * The common cases without reading first: the view says every domain of the record is free or
   * held by this service already. Free domains are claimed with compare-and-set creates (one
   * round trip for all), then the record is written compare-and-set against the revision the
   * view holds; a replacement that keeps its domains is a single write. Undefined when the view
   * cannot vouch (not loaded, a domain held by another service) or turns out to be behind: the
   * claims taken here are given back and the checked path decides.
   */
  async #putAsViewed(name: string, record: ServiceRecord): Promise<WriteResult | undefined> {
    const view = this.#view;
    if (!view.loaded) return undefined;
    const free: string[] = [];
    for (const domain of record.domains) {
      const holder = view.claim(domain)?.holder;
      if (holder === undefined) free.push(domain);
      else if (holder !== name) return undefined;
    }
    const existing = view.service(name);
    const { taken, failure } = await claimEach(free, (domain) => this.#kv.create(claimKey(domain), name));
    try {
      if (failure) throw failure;
      const value = encodeRecord(record);
      const revision = existing ? await this.#kv.update(serviceKey(name), value, existing.revision) : await this.#kv.create(serviceKey(name), value);
      view.noteWrite(name, revision, record);
      await this.#release((existing?.record?.domains ?? []).filter((d) => !record.domains.includes(d)), name);
      return { service: { name, revision, record, problem: undefined }, created: !existing };
    } catch (error) {
      if (!isWrongRevision(error)) {
        this.#releaseLater(taken, name);
        throw error;
      }
      await this.#release(taken, name); // the view was behind: the checked path starts from the bucket
      return undefined;
    }
  }

  /** Reads the record and its claims first, then claims what is missing and writes. */
  async #putChecked(name: string, record: ServiceRecord, precondition: Precondition): Promise<WriteResult> {
    const key = serviceKey(name);
    // One round trip for every read: the record and the claims of all its domains.
    const [current, ...claims] = await Promise.all([
      this.#kv.get(key),
      ...record.domains.map((domain) => this.#kv.get(claimKey(domain))),
    ]);
    const existing = isLive(current) ? toStored(name, current) : undefined;
    checkPrecondition(precondition, existing?.revision);

    const taken = await this.#claimAll(record.domains, claims, name);
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
      } else if (precondition !== undefined) {
        // checkPrecondition made sure the service exists at the expected revision.
        revision = await this.#kv.update(key, value, existing!.revision).catch(async (error: unknown) => {
          throw isWrongRevision(error) ? revisionMismatch(existing!.revision, await this.#storedRevision(key)) : error;
        });
      } else if (existing) {
        revision = await this.#kv.put(key, value);
      } else {
        try {
          revision = await this.#kv.create(key, value);
          created = true;
        } catch (error) {
          if (!isWrongRevision(error)) throw error;
          revision = await this.#kv.put(key, value); // created concurrently by another writer
        }
      }
      const dropped = (existing?.record?.domains ?? []).filter((d) => !record.domains.includes(d));
      await this.#release(dropped, name);
      return { service: { name, revision, record, problem: undefined }, created };
    } catch (error) {
      this.#releaseLater(taken, name);
      throw error;
    }
  }

  /** Deletes a service; false when there is none. */
  async delete(name: string, precondition: Precondition): Promise<boolean> {
    const key = serviceKey(name);
    const current = await this.#kv.get(key);
    if (!isLive(current)) {
      if (typeof precondition === "number") throw revisionMismatch(precondition, undefined);
      return false;
    }
    checkPrecondition(precondition, current.revision);
    try {
      await this.#kv.delete(key, { previousSeq: current.revision });
    } catch (error) {
      if (isWrongRevision(error)) throw revisionMismatch(current.revision, await this.#storedRevision(key));
      throw error;
    }
    await this.#release(toStored(name, current).record?.domains ?? [], name);
    return true;
  }

  /** What is stored now, after a compare-and-set lost to a writer that got there first (for its 412). */
  async #storedRevision(key: string): Promise<number | undefined> {
    const now = await this.#kv.get(key).catch(() => null); // unknown: the 412 still stands
    return isLive(now) ? now.revision : undefined;
  }

  /**
   * Claims every domain `name` does not hold yet, in parallel, starting from the claims already
   * read. Returns the domains this call took; if any claim fails, gives those back and throws.
   */
  async #claimAll(domains: string[], claims: (KvEntry | null)[], name: string): Promise<string[]> {
    const needed = domains.filter((_, i) => !(isLive(claims[i]!) && holderOf(claims[i]!) === name));
    if (needed.length === 0) return [];
    const { taken, failure } = await claimEach(needed, (domain) => this.#claim(domain, name, claims[domains.indexOf(domain)]!));
    if (failure) {
      this.#releaseLater(taken, name);
      throw failure;
    }
    return taken;
  }

  /** Takes `domain` for `name`: creates the claim, or takes over a stale one, with compare-and-set. */
  async #claim(domain: string, name: string, firstRead: KvEntry | null): Promise<void> {
    const key = claimKey(domain);
    let claim = firstRead;
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      if (attempt > 0) claim = await this.#kv.get(key);
      try {
        if (!isLive(claim)) {
          await this.#kv.create(key, name);
          return;
        }
        const holder = holderOf(claim);
        if (holder === name) return;
        if (await this.#holds(holder, domain, claim)) throw domainConflict(domain, holder);
        await this.#kv.update(key, name, claim.revision);
        return;
      } catch (error) {
        if (!isWrongRevision(error)) throw error; // lost a race for the claim: look again
      }
    }
    throw new ApiError(409, "domain_contended", `domain "${domain}" is being claimed concurrently; retry`, { domain });
  }

  /**
   * Whether `holder` still holds `claim`: it does unless its record was deleted or rewritten
   * without the domain after the claim. A claim newer than its holder's record belongs to a write
   * in progress, and an invalid record may still be serving its last good revision: both keep
   * the domain. A write in progress that never finished (its PUT failed half way and could not
   * give its claims back) is judged by the holder's record once the claim is old.
   */
  async #holds(holder: string, domain: string, claim: KvEntry): Promise<boolean> {
    // A claim written by hand that names no possible service (empty, "x>"): nobody holds it.
    if (parseKey(serviceKey(holder)).kind !== "service") return false;
    const entry = await this.#kv.get(serviceKey(holder));
    if (entry === null || entry.revision < claim.revision) {
      if (Date.now() - claim.created.getTime() < ORPHAN_CLAIM_MS) return true;
      if (entry === null) return false;
    }
    if (entry.operation !== "PUT") return false;
    const decoded = decodeRecord(entry.value);
    return !decoded.ok || decoded.record.domains.includes(domain);
  }

  /**
   * Gives back claims after a failed write without holding up the answer (NATS is likely what
   * failed). After a successful write claims are given back before answering, so a next write
   * of the same service cannot race with the release.
   */
  #releaseLater(domains: string[], name: string): void {
    if (domains.length > 0) void this.#release(domains, name);
  }

  /**
   * Gives back the claims `name` holds on `domains`. Best effort, never throws: the write it
   * follows has happened, and a claim left behind is stale by the rules of #holds.
   */
  async #release(domains: string[], name: string): Promise<void> {
    await Promise.all(
      domains.map(async (domain) => {
        const key = claimKey(domain);
        try {
          const claim = await this.#kv.get(key);
          if (isLive(claim) && holderOf(claim) === name) await this.#kv.delete(key, { previousSeq: claim.revision });
        } catch {
          // Left for the next claimant to take over.
        }
      }),
    );
  }
}

/** Claims domains in parallel, waiting for every attempt: what was taken, and the first failure. */
async function claimEach(domains: string[], claim: (domain: string) => Promise<unknown>): Promise<{ taken: string[]; failure: unknown }> {
  const results = await Promise.allSettled(domains.map(claim));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  return { taken: domains.filter((_, i) => results[i]!.status === "fulfilled"), failure: failure?.reason };
}

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
  if (precondition !== current) throw revisionMismatch(precondition, current);
}
