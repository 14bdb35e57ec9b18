// The in-memory registry: which service records are servable, as a function of the bucket's
// state alone, so every replica decides the same.
//
// - A service's effective record is its latest value when valid; when the latest value is
//   invalid, the newest valid revision still in the key's history (looked up by the watcher),
//   so the last good config keeps serving.
// - A domain listed by several effective records goes to the holder of its claim
//   (domains.<domain>, written with compare-and-set by the API) when that service lists it;
//   otherwise to the record with the lowest revision, i.e. the one written first.
// - A service is served only if it wins every one of its domains: a conflicting record is never
//   pushed, and the service already serving a domain keeps it.
// - Replicas claim the domains they serve that have no claim yet (records written with the CLI),
//   so a domain, once served, stays with its service: claims are one way. A claim is taken over
//   only when stale: its holder was deleted, or rewritten without the domain, after the claim.
import { decodeRecord, formatProblem, type ServiceRecord } from "@envoyage/registry";

export interface EffectiveRecord {
  record: ServiceRecord;
  revision: number;
}

export type ServiceStatus =
  | { state: "serving"; revision: number }
  | { state: "invalid"; revision: number; problem: string; servingRevision: number | undefined }
  | { state: "conflict"; revision: number; conflicts: { domain: string; heldBy: string }[] };

interface Entry {
  /** Revision and problem of the latest value in the bucket. */
  latestRevision: number;
  problem: string | undefined;
  effective: EffectiveRecord | undefined;
}

/** A change to what Envoy should serve: a record to serve, or undefined to stop serving it. */
export interface ServedChange {
  name: string;
  record: ServiceRecord | undefined;
}

/** A claim to write: domains.<domain> = owner, if its revision is still `expectedRevision` (0: absent). */
export interface ClaimWrite {
  domain: string;
  owner: string;
  expectedRevision: number;
}

interface Claim {
  owner: string;
  revision: number;
}

export class Registry {
  readonly #entries = new Map<string, Entry>();
  readonly #claims = new Map<string, Claim>();
  /** Revision at which each deleted service was deleted: a claim older than that is stale. */
  readonly #deletedAt = new Map<string, number>();
  /** domain → services whose effective record lists it */
  readonly #byDomain = new Map<string, Set<string>>();
  readonly #served = new Map<string, EffectiveRecord>();
  readonly #dirty = new Set<string>();
  /** Services whose latest record is not what is served, kept by resolve() for cheap reports. */
  readonly #rejected = new Set<string>();

  /**
   * Applies the latest value of services.<name> (undefined when deleted). Returns true when the
   * value is invalid and the newest valid revision should be looked up in the key's history.
   */
  setService(name: string, revision: number, value: Uint8Array | undefined): boolean {
    const entry = this.#entries.get(name);
    if (value === undefined) {
      if (entry) {
        this.#setEffective(name, entry, undefined);
        this.#entries.delete(name);
      }
      this.#deletedAt.set(name, revision);
      return false;
    }
    this.#deletedAt.delete(name);
    const decoded = decodeRecord(value);
    const target = entry ?? { latestRevision: revision, problem: undefined, effective: undefined };
    this.#entries.set(name, target);
    target.latestRevision = revision;
    if (decoded.ok) {
      target.problem = undefined;
      this.#setEffective(name, target, { record: decoded.record, revision });
      return false;
    }
    target.problem = formatProblem(decoded.problem);
    this.#dirty.add(name);
    return true;
  }

  /** Whether a history lookup for `name` at `latestRevision` still matters: no write or delete since. */
  awaitsFallback(name: string, latestRevision: number): boolean {
    return this.#entries.get(name)?.latestRevision === latestRevision;
  }

  /** The result of a history lookup for a service whose latest value (at `latestRevision`) is invalid. */
  setFallback(name: string, latestRevision: number, fallback: EffectiveRecord | undefined): void {
    const entry = this.#entries.get(name);
    if (!entry || entry.latestRevision !== latestRevision) return; // superseded meanwhile
    this.#setEffective(name, entry, fallback);
  }

  /**
   * The bucket was deleted and created again: every record and claim applied so far is void.
   * What is served is withdrawn by the next resolve(), unless the new bucket has it again.
   */
  forgetAll(): void {
    for (const [name, entry] of this.#entries) this.#setEffective(name, entry, undefined);
    this.#entries.clear();
    this.#claims.clear();
    this.#deletedAt.clear();
  }

  /** Applies domains.<domain> (owner undefined when deleted). */
  setClaim(domain: string, owner: string | undefined, revision: number): void {
    if (owner === undefined) this.#claims.delete(domain);
    else this.#claims.set(domain, { owner, revision });
    for (const name of this.#byDomain.get(domain) ?? []) this.#dirty.add(name);
  }

  /** Claims to write for the served domains of `names` (default: every service) that lack a valid one. */
  claimsToWrite(names: Iterable<string> = this.#served.keys()): ClaimWrite[] {
    const writes: ClaimWrite[] = [];
    for (const name of names) {
      for (const domain of this.#served.get(name)?.record.domains ?? []) {
        const claim = this.#claims.get(domain);
        if (!claim) writes.push({ domain, owner: name, expectedRevision: 0 });
        else if (claim.owner !== name && this.#isStale(claim, domain)) writes.push({ domain, owner: name, expectedRevision: claim.revision });
      }
    }
    return writes;
  }

  /**
   * Re-evaluates what changed since the last call; returns the changes to what is served, and
   * the names evaluated (whose claims may need writing).
   */
  resolve(): { changes: ServedChange[]; evaluated: string[] } {
    const changes: ServedChange[] = [];
    const evaluated = [...this.#dirty];
    for (const name of evaluated) {
      const entry = this.#entries.get(name);
      const next = entry?.effective && this.#conflictsOf(name, entry.effective.record).length === 0 ? entry.effective : undefined;
      if (entry && (entry.problem !== undefined || (entry.effective && !next))) this.#rejected.add(name);
      else this.#rejected.delete(name);
      const current = this.#served.get(name);
      if (next === current) continue;
      if (next) this.#served.set(name, next);
      else this.#served.delete(name);
      changes.push({ name, record: next?.record });
    }
    this.#dirty.clear();
    return { changes, evaluated };
  }

  status(name: string): ServiceStatus | undefined {
    const entry = this.#entries.get(name);
    if (!entry) return undefined;
    if (entry.problem !== undefined) {
      return {
        state: "invalid",
        revision: entry.latestRevision,
        problem: entry.problem,
        servingRevision: this.#served.get(name)?.revision,
      };
    }
    const conflicts = entry.effective ? this.#conflictsOf(name, entry.effective.record) : [];
    if (conflicts.length > 0) return { state: "conflict", revision: entry.latestRevision, conflicts };
    return { state: "serving", revision: entry.latestRevision };
  }

  /** Names of services whose latest record is not what is served (invalid or conflicting), as of resolve(). */
  rejected(): string[] {
    return [...this.#rejected];
  }

  /** Services by state, for metrics. */
  counts(): { served: number; invalid: number; conflict: number } {
    const counts = { served: this.#served.size, invalid: 0, conflict: 0 };
    for (const name of this.#rejected) {
      const state = this.status(name)?.state;
      if (state === "invalid" || state === "conflict") counts[state]++;
    }
    return counts;
  }

  get servedCount(): number {
    return this.#served.size;
  }

  served(): ReadonlyMap<string, EffectiveRecord> {
    return this.#served;
  }

  #setEffective(name: string, entry: Entry, effective: EffectiveRecord | undefined): void {
    for (const domain of entry.effective?.record.domains ?? []) this.#unindex(domain, name);
    entry.effective = effective;
    for (const domain of effective?.record.domains ?? []) this.#index(domain, name);
    this.#dirty.add(name);
  }

  #index(domain: string, name: string): void {
    let holders = this.#byDomain.get(domain);
    if (!holders) this.#byDomain.set(domain, (holders = new Set()));
    holders.add(name);
    for (const other of holders) this.#dirty.add(other);
  }

  #unindex(domain: string, name: string): void {
    const holders = this.#byDomain.get(domain);
    if (!holders) return;
    holders.delete(name);
    for (const other of holders) this.#dirty.add(other);
    if (holders.size === 0) this.#byDomain.delete(domain);
  }

  #conflictsOf(name: string, record: ServiceRecord): { domain: string; heldBy: string }[] {
    const conflicts: { domain: string; heldBy: string }[] = [];
    for (const domain of record.domains) {
      const winner = this.#winnerOf(domain);
      if (winner !== name) conflicts.push({ domain, heldBy: winner });
    }
    return conflicts;
  }

  /** Stale: the holder was deleted, or rewritten without the domain, after the claim was made. */
  #isStale(claim: Claim, domain: string): boolean {
    const holder = this.#entries.get(claim.owner);
    if (!holder) return (this.#deletedAt.get(claim.owner) ?? 0) > claim.revision;
    return holder.latestRevision > claim.revision && !holder.effective?.record.domains.includes(domain);
  }

  #winnerOf(domain: string): string {
    const candidates = this.#byDomain.get(domain)!;
    const claimant = this.#claims.get(domain)?.owner;
    if (claimant !== undefined && candidates.has(claimant)) return claimant;
    let winner = "";
    let lowest = Infinity;
    for (const name of candidates) {
      const revision = this.#entries.get(name)!.effective!.revision;
      if (revision < lowest) {
        lowest = revision;
        winner = name;
      }
    }
    return winner;
  }
}
