// Domain claims: domains.<domain> = the name of the service that holds it, written with
// compare-and-set, so of two services racing for a domain exactly one wins. A stale claim (see
// claimStaleAt in @envoyage/registry: its holder was deleted or rewritten without the domain, or
// never wrote a record listing it) may be taken over, again with compare-and-set. ServiceStore claims a record's domains before writing it and gives back
// the ones it dropped after.
import type { KV, KvEntry } from "@nats-io/kv";
import { claimHolder, claimKey, claimStaleAt, decodeRecord, isServiceName, serviceKey } from "@envoyage/registry";
import { ApiError, domainConflict } from "./errors.js";
import { isLive, isWrongRevision } from "./kv-entries.js";

const CLAIM_ATTEMPTS = 5;
/** How long an answer waits for the claims its write dropped to be given back; the rest goes on behind it. */
const GIVE_BACK_WAIT_MS = 100;

export class DomainClaims {
  readonly #kv: KV;
  readonly #listedBy: (domain: string) => string[];

  /** `listedBy`: the services whose record lists a domain, as far as the API knows. */
  constructor(kv: KV, listedBy: (domain: string) => string[]) {
    this.#kv = kv;
    this.#listedBy = listedBy;
  }

  /** Creates the claims of domains nobody holds, in parallel: what was taken, and the first failure. */
  createAll(domains: string[], name: string): Promise<{ taken: string[]; failure: unknown }> {
    return claimEach(domains, (domain) => this.#kv.create(claimKey(domain), name));
  }

  /**
   * Claims every domain `name` does not hold yet, in parallel, starting from the claims already
   * read. Returns the domains this call took; if any claim fails, gives those back and throws.
   */
  async claimAll(domains: string[], claims: (KvEntry | null)[], name: string): Promise<string[]> {
    const needed = domains.filter((_, i) => !(isLive(claims[i]!) && claimHolder(claims[i]!.value) === name));
    if (needed.length === 0) return [];
    const { taken, failure } = await claimEach(needed, (domain) => this.#claim(domain, name, claims[domains.indexOf(domain)]!));
    if (failure) {
      this.releaseLater(taken, name);
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
        const holder = claimHolder(claim.value);
        if (holder === name) return;
        if (await this.#holds(holder, domain, claim)) throw domainConflict(domain, holder);
        // A stale claim (one written by hand, say) may stand beside a service that serves the
        // domain all the same, as the only record listing it: taking the claim would hand the
        // domain over, and a service that serves a domain never loses it to a later write.
        const lister = this.#listedBy(domain).find((other) => other !== name);
        if (lister !== undefined) throw domainConflict(domain, lister);
        await this.#kv.update(key, name, claim.revision);
        return;
      } catch (error) {
        if (!isWrongRevision(error)) throw error; // lost a race for the claim: look again
      }
    }
    throw new ApiError(409, "domain_contended", `domain "${domain}" is being claimed concurrently; retry`, { domain });
  }

  /**
   * Whether `holder` still holds `claim`, by the rule the replicas follow too (claimStaleAt). An
   * invalid latest record may still be serving its last good revision: it counts as listing the domain.
   */
  async #holds(holder: string, domain: string, claim: KvEntry): Promise<boolean> {
    // A value that names no possible service has no record to read (and no valid key).
    const entry = isServiceName(holder) ? await this.#kv.get(serviceKey(holder)) : null;
    const decoded = entry?.operation === "PUT" ? decodeRecord(entry.value) : undefined;
    const listsDomain = decoded !== undefined && (!decoded.ok || decoded.record.domains.includes(domain));
    const facts = { holder, revision: claim.revision, createdMs: claim.created.getTime() };
    return claimStaleAt(facts, { listsDomain, lastWriteRevision: entry?.revision }) > Date.now();
  }

  /**
   * Gives back claims after a failed write without holding up the answer (NATS is likely what
   * failed). After a successful write claims are given back before answering, so a next write
   * of the same service cannot race with the release.
   */
  releaseLater(domains: string[], name: string): void {
    if (domains.length > 0) void this.release(domains, name);
  }

  /**
   * Gives back the claims a successful write dropped. Before answering, so a next write of the
   * same service does not race with it, but waiting GIVE_BACK_WAIT_MS at most: the write has
   * happened, and a NATS slow to answer must not turn its answer into a 503.
   */
  async giveBack(domains: string[], name: string): Promise<void> {
    if (domains.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise((resolve) => (timer = setTimeout(resolve, GIVE_BACK_WAIT_MS)));
    await Promise.race([this.release(domains, name), waited]);
    clearTimeout(timer);
  }

  /**
   * Gives back the claims `name` holds on `domains`. Best effort, never throws: the write it
   * follows has happened, and a claim left behind is stale by the rules of #holds.
   */
  async release(domains: string[], name: string): Promise<void> {
    await Promise.all(
      domains.map(async (domain) => {
        const key = claimKey(domain);
        try {
          const claim = await this.#kv.get(key);
          if (isLive(claim) && claimHolder(claim.value) === name) await this.#kv.delete(key, { previousSeq: claim.revision });
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
