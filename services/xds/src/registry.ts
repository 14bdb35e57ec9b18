// The in-memory registry: which service records are servable, as a function of the bucket's
// state alone, so every replica decides the same.
//
// - A service's ask is its latest value when valid; when the latest value is invalid, the newest
//   valid revision still in the key's history (looked up by the replica), so the last good
//   config keeps serving.
// - A domain listed by several asks goes to the holder of its claim (domains.<domain>, written
//   with compare-and-set by the API) when that service lists it; otherwise to the ask with the
//   lowest revision, i.e. the one written first.
// - A service whose ask wins every one of its domains serves it (a winning ask). One whose ask
//   conflicts keeps serving its last good revision: the newest earlier valid revision (history,
//   looked up like an invalid value's) whose every domain it holds the claim for and no other
//   service's winning ask lists. Claims and history are in the bucket, so a replica that loads
//   it from scratch decides the same; a conflicting record is never pushed, and the service
//   already serving a domain keeps it.
// - Replicas claim every domain they serve whose claim is missing or names another service
//   (records written with the CLI; a claim written by hand, or left by a PUT that failed half
//   way), so a domain, once served, stays with its service: claims are one way. A service serving
//   a domain never conflicts with the claim's holder: the holder would win the domain if its ask
//   listed it, and a service keeping its last good revision holds every claim of it. (A holder
//   whose latest value is invalid asks for what is unknown until its history is in: its claims
//   wait, and the replica commits nothing while loading until every history is in.)
import { addToIndex, decodeRecord, formatProblem, removeFromIndex, type ServiceRecord } from "@envoyage/registry";

export interface EffectiveRecord {
  record: ServiceRecord;
  revision: number;
}

export type ServiceStatus =
  | { state: "serving"; revision: number }
  | { state: "invalid"; revision: number; problem: string; servingRevision: number | undefined }
  | { state: "conflict"; revision: number; conflicts: { domain: string; heldBy: string }[]; servingRevision: number | undefined };

interface Entry {
  /** Revision and problem of the latest value in the bucket. */
  latestRevision: number;
  problem: string | undefined;
  /** What the service asks to serve: its latest valid value (for an invalid one, the newest valid revision before it). */
  ask: EffectiveRecord | undefined;
  /** The valid revisions before the latest, newest first, once looked up in the key's history. */
  older: EffectiveRecord[] | undefined;
  /** Whether the history of the latest revision was asked for. */
  historyRequested: boolean;
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

/** A key's history to read: the valid revisions of services.<name> before `revision`, for setHistory(). */
export interface HistoryLookup {
  name: string;
  revision: number;
}

interface Claim {
  owner: string;
  revision: number;
}

export class Registry {
  readonly #entries = new Map<string, Entry>();
  readonly #claims = new Map<string, Claim>();
  /** domain → services whose ask lists it */
  readonly #byDomain = new Map<string, Set<string>>();
  /** domain → the service its asks give it to, cached until its asks or claim change */
  readonly #winners = new Map<string, string>();
  /** Services whose ask wins every one of its domains, as of resolve(). */
  readonly #winningAsks = new Set<string>();
  /** domain → services with an earlier revision listing it in their looked-up history */
  readonly #byOlderDomain = new Map<string, Set<string>>();
  readonly #served = new Map<string, EffectiveRecord>();
  /** domain → the service serving it */
  readonly #servedBy = new Map<string, string>();
  readonly #dirty = new Set<string>();
  /** What was served from a bucket since deleted: never kept while a history lookup runs. */
  readonly #void = new WeakSet<EffectiveRecord>();
  /** Holders whose claims claimsToWrite() left alone until their history is in. */
  readonly #claimsAwaitingHistory = new Set<string>();
  /** Services whose latest record is not what is served, kept by resolve() for cheap reports. */
  readonly #rejected = new Set<string>();

  /**
   * Applies the latest value of services.<name> (undefined when deleted). Returns true when the
   * value is invalid and the key's history should be looked up (setHistory) for its last good revision.
   */
  setService(name: string, revision: number, value: Uint8Array | undefined): boolean {
    const entry = this.#entries.get(name);
    if (entry) this.#setOlder(name, entry, undefined);
    if (value === undefined) {
      if (entry) {
        this.#setAsk(name, entry, undefined);
        this.#entries.delete(name);
      }
      return false;
    }
    const decoded = decodeRecord(value);
    const target = entry ?? { latestRevision: revision, problem: undefined, ask: undefined, older: undefined, historyRequested: false };
    this.#entries.set(name, target);
    target.latestRevision = revision;
    target.historyRequested = !decoded.ok;
    if (decoded.ok) {
      target.problem = undefined;
      this.#setAsk(name, target, { record: decoded.record, revision });
      return false;
    }
    // The ask stays what it was until the history says what the last good revision is.
    target.problem = formatProblem(decoded.problem);
    this.#dirty.add(name);
    return true;
  }

  /** Whether a history lookup for `name` at `latestRevision` still matters: no write or delete since. */
  awaitsHistory(name: string, latestRevision: number): boolean {
    return this.#entries.get(name)?.latestRevision === latestRevision;
  }

  /** The result of a history lookup: the valid revisions of `name` before `latestRevision`, newest first. */
  setHistory(name: string, latestRevision: number, older: EffectiveRecord[]): void {
    const entry = this.#entries.get(name);
    if (!entry || entry.latestRevision !== latestRevision) return; // superseded meanwhile
    this.#setOlder(name, entry, older);
    if (entry.problem !== undefined) this.#setAsk(name, entry, older[0]);
    this.#dirty.add(name);
    // Takeovers of its claims waited for this history (claimsToWrite): their servers look again.
    if (this.#claimsAwaitingHistory.delete(name)) {
      for (const [domain, claim] of this.#claims) if (claim.owner === name) this.recheckClaim(domain);
    }
  }

  /** The service serving `domain` is evaluated by the next resolve(), and so its claim written if due. */
  recheckClaim(domain: string): void {
    const server = this.#servedBy.get(domain);
    if (server !== undefined) this.#dirty.add(server);
  }

  /**
   * The bucket was deleted and created again: every record and claim applied so far is void.
   * What is served is withdrawn by the next resolve(), unless the new bucket has it again.
   */
  forgetAll(): void {
    for (const [name, entry] of this.#entries) this.#setAsk(name, entry, undefined);
    for (const record of this.#served.values()) this.#void.add(record);
    this.#entries.clear();
    this.#byOlderDomain.clear();
    this.#claims.clear();
    this.#winners.clear();
    this.#claimsAwaitingHistory.clear();
  }

  /** Applies domains.<domain> (owner undefined when deleted). */
  setClaim(domain: string, owner: string | undefined, revision: number): void {
    if (owner === undefined) this.#claims.delete(domain);
    else this.#claims.set(domain, { owner, revision });
    this.#touchDomain(domain);
  }

  /**
   * Claims to write for the domains `names` (default: every service) serve whose claim is missing
   * or names another service. Nothing for what is served from a bucket since deleted: its claims
   * are not in the new one, and the next resolve() decides what of it stays.
   */
  claimsToWrite(names: Iterable<string> = this.#served.keys()): ClaimWrite[] {
    const writes: ClaimWrite[] = [];
    for (const name of names) {
      const served = this.#served.get(name);
      if (!served || this.#void.has(served)) continue;
      for (const domain of served.record.domains) {
        const claim = this.#claims.get(domain);
        if (claim?.owner === name) continue;
        // Whether the holder asks for the domain is not known until its history is in.
        if (claim && this.#awaitsHistoryOf(claim.owner)) {
          this.#claimsAwaitingHistory.add(claim.owner);
          continue;
        }
        writes.push({ domain, owner: name, expectedRevision: claim?.revision ?? 0 });
      }
    }
    return writes;
  }

  /**
   * Re-evaluates what changed since the last call; returns the changes to what is served, the
   * names evaluated (whose claims may need writing), and the histories to look up for services
   * whose ask conflicts. Until its history is in, such a service keeps what it serves, if it
   * still holds every domain of it.
   */
  resolve(): { changes: ServedChange[]; evaluated: string[]; historyLookups: HistoryLookup[] } {
    // Which asks win depends on asks and claims alone; what a conflicting service keeps depends
    // on which asks win, so that is settled first. A set visits what is added while it is iterated:
    // the services a flip touches are evaluated in this same pass.
    for (const name of this.#dirty) {
      const ask = this.#entries.get(name)?.ask;
      const wins = ask !== undefined && this.#conflictsOf(name, ask.record).length === 0;
      if (wins === this.#winningAsks.has(name)) continue;
      if (wins) this.#winningAsks.add(name);
      else this.#winningAsks.delete(name);
      for (const domain of ask?.record.domains ?? []) this.#touchDomain(domain);
    }
    const changes: ServedChange[] = [];
    const historyLookups: HistoryLookup[] = [];
    const evaluated = [...this.#dirty];
    for (const name of evaluated) {
      const entry = this.#entries.get(name);
      const current = this.#served.get(name);
      let next: EffectiveRecord | undefined;
      if (entry?.ask && this.#winningAsks.has(name)) next = entry.ask;
      else if (entry?.ask) {
        if (!entry.older && !entry.historyRequested) {
          entry.historyRequested = true;
          historyLookups.push({ name, revision: entry.latestRevision });
        }
        const kept = current && !this.#void.has(current) ? [current] : [];
        next = this.#lastHeld(name, entry.ask.revision, entry.older ?? kept);
      }
      if (entry && (entry.problem !== undefined || next !== entry.ask)) this.#rejected.add(name);
      else this.#rejected.delete(name);
      if (next === current) continue;
      this.#serve(name, current, next);
      changes.push({ name, record: next?.record });
    }
    this.#dirty.clear();
    return { changes, evaluated, historyLookups };
  }

  status(name: string): ServiceStatus | undefined {
    const entry = this.#entries.get(name);
    if (!entry) return undefined;
    const servingRevision = this.#served.get(name)?.revision;
    if (entry.problem !== undefined) return { state: "invalid", revision: entry.latestRevision, problem: entry.problem, servingRevision };
    const conflicts = entry.ask ? this.#conflictsOf(name, entry.ask.record) : [];
    if (conflicts.length > 0) return { state: "conflict", revision: entry.latestRevision, conflicts, servingRevision };
    return { state: "serving", revision: entry.latestRevision };
  }

  /**
   * Whether what `name` serves may still change with a history lookup in flight: its latest value
   * is rejected and the last good revision before it is not known yet.
   */
  awaitsLastGood(name: string): boolean {
    const entry = this.#entries.get(name);
    return entry !== undefined && entry.historyRequested && entry.older === undefined;
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

  #setAsk(name: string, entry: Entry, ask: EffectiveRecord | undefined): void {
    for (const domain of entry.ask?.record.domains ?? []) this.#removeAsk(domain, name);
    entry.ask = ask;
    for (const domain of ask?.record.domains ?? []) this.#addAsk(domain, name);
    this.#dirty.add(name);
  }

  #setOlder(name: string, entry: Entry, older: EffectiveRecord[] | undefined): void {
    for (const { record } of entry.older ?? []) for (const domain of record.domains) removeFromIndex(this.#byOlderDomain, domain, name);
    entry.older = older;
    for (const { record } of older ?? []) for (const domain of record.domains) addToIndex(this.#byOlderDomain, domain, name);
  }

  #serve(name: string, current: EffectiveRecord | undefined, next: EffectiveRecord | undefined): void {
    for (const domain of current?.record.domains ?? []) if (this.#servedBy.get(domain) === name) this.#servedBy.delete(domain);
    if (next) this.#served.set(name, next);
    else this.#served.delete(name);
    for (const domain of next?.record.domains ?? []) this.#servedBy.set(domain, name);
  }

  /**
   * `name` asks for `domain`. The other asks need a look only when that changes who wins it:
   * thousands of records listing one domain would otherwise cost a look at each, per record.
   */
  #addAsk(domain: string, name: string): void {
    const before = this.#byDomain.has(domain) ? this.#winnerOf(domain) : undefined;
    addToIndex(this.#byDomain, domain, name);
    if (before === undefined || this.#beats(name, before, this.#claims.get(domain)?.owner)) {
      this.#touchDomain(domain);
      this.#winners.set(domain, name);
    } else this.#touchDomain(domain, name);
  }

  #removeAsk(domain: string, name: string): void {
    if (!this.#byDomain.get(domain)?.has(name)) return;
    const before = this.#winnerOf(domain);
    removeFromIndex(this.#byDomain, domain, name);
    this.#touchDomain(domain, before === name ? undefined : name);
  }

  /**
   * Marks dirty every service whose outcome depends on who asks for or holds `domain`; of the
   * asks only `only` when the domain's winner stayed the same.
   */
  #touchDomain(domain: string, only?: string): void {
    if (only !== undefined) this.#dirty.add(only);
    else {
      this.#winners.delete(domain);
      for (const name of this.#byDomain.get(domain) ?? []) this.#dirty.add(name);
    }
    for (const name of this.#byOlderDomain.get(domain) ?? []) this.#dirty.add(name);
    const server = this.#servedBy.get(domain);
    if (server !== undefined) this.#dirty.add(server);
  }

  #conflictsOf(name: string, record: ServiceRecord): { domain: string; heldBy: string }[] {
    const conflicts: { domain: string; heldBy: string }[] = [];
    for (const domain of record.domains) {
      const winner = this.#winnerOf(domain);
      if (winner !== name) conflicts.push({ domain, heldBy: winner });
    }
    return conflicts;
  }

  /** The newest candidate before revision `below` whose every domain `name` holds. */
  #lastHeld(name: string, below: number, candidates: EffectiveRecord[]): EffectiveRecord | undefined {
    return candidates.find((c) => c.revision < below && c.record.domains.every((domain) => this.#holds(name, domain)));
  }

  /** Whether `name`'s latest value is invalid and its history not in yet: its ask is unknown. */
  #awaitsHistoryOf(name: string): boolean {
    const entry = this.#entries.get(name);
    return entry !== undefined && entry.problem !== undefined && entry.older === undefined;
  }

  /** Whether `name` holds the claim on `domain` and no other service's winning ask lists it. */
  #holds(name: string, domain: string): boolean {
    if (this.#claims.get(domain)?.owner !== name) return false;
    for (const other of this.#byDomain.get(domain) ?? []) if (other !== name && this.#winningAsks.has(other)) return false;
    return true;
  }

  #winnerOf(domain: string): string {
    const cached = this.#winners.get(domain);
    if (cached !== undefined) return cached;
    const winner = this.#decideWinner(domain);
    this.#winners.set(domain, winner);
    return winner;
  }

  /** Whether `a`'s ask wins a domain over `b`'s: the claim's holder, or else the one written first. */
  #beats(a: string, b: string, claimant: string | undefined): boolean {
    if (a === claimant || b === claimant) return a === claimant;
    return this.#entries.get(a)!.ask!.revision < this.#entries.get(b)!.ask!.revision;
  }

  #decideWinner(domain: string): string {
    const claimant = this.#claims.get(domain)?.owner;
    let winner: string | undefined;
    for (const name of this.#byDomain.get(domain)!) if (winner === undefined || this.#beats(name, winner, claimant)) winner = name;
    return winner!;
  }
}
