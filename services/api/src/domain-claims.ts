// Domain claims: domains.<domain> = the name of the service that holds it, written with
// compare-and-set, so of two services racing for a domain exactly one wins. ServiceStore claims a
// record's domains before writing it and gives back the ones it dropped after. A stale claim
// (#holds) may be taken over, again with compare-and-set, unless another service's record lists
// the domain: the replicas give a domain whose claim's holder does not list it to the service
// serving it, and take the claim over for that service.
import type { KV, KvEntry } from "@nats-io/kv";
import { claimHolder, claimKey, decodeRecord, isServiceName, serviceKey, validRevisionsBefore, within } from "@envoyage/registry";
import { ApiError, domainConflict, pendingClaim } from "./errors.js";
import { isLive, isWrongRevision } from "./kv-entries.js";
import type { RegistryView } from "./registry-view.js";

const CLAIM_ATTEMPTS = 5;
/** How long an answer waits for the claims its write dropped to be given back; the rest goes on behind it. */
const GIVE_BACK_WAIT_MS = 100;
/**
 * How long a claim its holder's record does not list stays the holder's: a PUT writes the claim
 * first and the record after, so until then it may be a PUT on its way (or one that failed half
 * way and could not give the claim back).
 */
const CLAIM_PENDING_MS = 60_000;

export class DomainClaims {
  readonly #kv: KV;
  /** Which services list a domain, as far as the API knows, and keys' histories. */
  readonly #view: Pick<RegistryView, "servicesListing" | "history">;

  constructor(kv: KV, view: Pick<RegistryView, "servicesListing" | "history">) {
    this.#kv = kv;
    this.#view = view;
  }

  /**
   * The domains a service's latest value lists: for an invalid one, those of its last good
   * revision, which the replicas serve instead; none once deleted.
   */
  async listedBy(entry: KvEntry | null): Promise<string[]> {
    if (!isLive(entry)) return [];
    const decoded = decodeRecord(entry.value);
    if (decoded.ok) return decoded.record.domains;
    return validRevisionsBefore(await this.#view.history(entry.key), entry.revision)[0]?.record.domains ?? [];
  }

  /** Creates the claims of domains nobody holds, in parallel: what was taken, and the first failure. */
  createAll(domains: string[], name: string): Promise<{ taken: string[]; failure: unknown }> {
    return claimEach(domains, async (domain) => {
      await this.#kv.create(claimKey(domain), name);
      return true;
    });
  }

  /**
   * Claims every domain `name` does not hold yet, in parallel, starting from the claims already
   * read; `listed` is what its current value lists (listedBy). Returns the domains this call
   * took; if any claim fails, gives those back and throws.
   */
  async claimAll(domains: string[], claims: (KvEntry | null)[], name: string, listed: readonly string[]): Promise<string[]> {
    const held = (i: number) => isLive(claims[i]!) && claimHolder(claims[i]!.value) === name;
    // A claim it holds but does not list (a PUT that failed half way, one written by hand) is no
    // right over a service listing the domain: the replicas serve that one and take the claim.
    domains.forEach((domain, i) => {
      if (held(i) && !listed.includes(domain)) this.#refuseIfListedByAnother(domain, name);
    });
    const needed = domains.filter((_, i) => !held(i));
    if (needed.length === 0) return [];
    const { taken, failure } = await claimEach(needed, (domain) => this.#claim(domain, name, claims[domains.indexOf(domain)]!));
    if (failure) {
      this.releaseLater(taken, name);
      throw failure;
    }
    return taken;
  }

  /**
   * Takes `domain` for `name`: creates the claim, or takes over a stale one, with compare-and-set.
   * True when this call wrote the claim; false when `name` held it already (then it is not this
   * request's to give back if the request fails).
   */
  async #claim(domain: string, name: string, firstRead: KvEntry | null): Promise<boolean> {
    const key = claimKey(domain);
    let claim = firstRead;
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      if (attempt > 0) claim = await this.#kv.get(key);
      try {
        if (!isLive(claim)) {
          // No claim, yet another record may list the domain (written with the CLI a moment ago,
          // or its claim deleted by hand): the replicas serve that one and are about to claim it.
          this.#refuseIfListedByAnother(domain, name);
          await this.#kv.create(key, name);
          return true;
        }
        const holder = claimHolder(claim.value);
        if (holder === name) return false;
        const held = await this.#holds(holder, domain, claim);
        if (held === "listed") throw domainConflict(domain, holder, "claim");
        if (held !== undefined) throw pendingClaim(domain, holder, held);
        // A stale claim (one written by hand, say) may stand beside a service that serves the
        // domain all the same, as the only record listing it: taking the claim would hand the
        // domain over, and a service that serves a domain never loses it to a later write.
        this.#refuseIfListedByAnother(domain, name);
        await this.#kv.update(key, name, claim.revision);
        return true;
      } catch (error) {
        if (!isWrongRevision(error)) throw error; // lost a race for the claim: look again
      }
    }
    throw new ApiError(409, "domain_contended", `domain "${domain}" is being claimed concurrently; retry`, { domain });
  }

  /** A service other than `name` whose record lists `domain` (the replicas give it the domain), if any. */
  listerOtherThan(domain: string, name: string): string | undefined {
    return this.#view.servicesListing(domain).find((other) => other !== name);
  }

  #refuseIfListedByAnother(domain: string, name: string): void {
    const lister = this.listerOtherThan(domain, name);
    if (lister !== undefined) throw domainConflict(domain, lister, "record");
  }

  /**
   * Whether `holder` still holds `claim`: "listed" while its record lists the domain (see
   * listedBy); otherwise until it is rewritten or deleted after the claim, and for
   * CLAIM_PENDING_MS at most: then until when. Undefined once it is stale.
   */
  async #holds(holder: string, domain: string, claim: KvEntry): Promise<"listed" | Date | undefined> {
    // A value that names no possible service (empty, "x>"): nobody holds it.
    if (!isServiceName(holder)) return undefined;
    const entry = await this.#kv.get(serviceKey(holder));
    if ((await this.listedBy(entry)).includes(domain)) return "listed";
    if (entry !== null && entry.revision > claim.revision) return undefined;
    const lapses = claim.created.getTime() + CLAIM_PENDING_MS;
    return Date.now() < lapses ? new Date(lapses) : undefined;
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
    if (domains.length > 0) await within(this.release(domains, name), GIVE_BACK_WAIT_MS);
  }

  /**
   * Gives back the claims `name` holds on `domains`, except those its stored record lists: a
   * write the client was told failed (NATS answered too late) may have landed all the same, or
   * another API may have written the service meanwhile. Best effort, never throws: the write it
   * follows has happened, and a claim left behind is stale by the rules of #holds.
   */
  async release(domains: string[], name: string): Promise<void> {
    const listed = this.#kv
      .get(serviceKey(name))
      .then((entry) => this.listedBy(entry))
      .catch(() => undefined);
    await Promise.all(
      domains.map(async (domain) => {
        const key = claimKey(domain);
        try {
          const claim = await this.#kv.get(key);
          if (!isLive(claim) || claimHolder(claim.value) !== name) return;
          const stillListed = await listed;
          if (stillListed === undefined || stillListed.includes(domain)) return; // unknown: kept
          await this.#kv.delete(key, { previousSeq: claim.revision });
        } catch {
          // Left for the next claimant to take over.
        }
      }),
    );
  }
}

/**
 * Claims domains in parallel, waiting for every attempt: what this call took (`claim` resolves
 * true when it wrote the claim), and the first failure.
 */
async function claimEach(domains: string[], claim: (domain: string) => Promise<boolean>): Promise<{ taken: string[]; failure: unknown }> {
  const results = await Promise.allSettled(domains.map(claim));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  const took = results.map((r) => r.status === "fulfilled" && r.value);
  return { taken: domains.filter((_, i) => took[i]), failure: failure?.reason };
}
