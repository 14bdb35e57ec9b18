// When a domain claim (domains.<domain>) stops being its holder's: the one rule the API (taking
// a claim over for a PUT) and the replicas (claiming the domains they serve) both follow.
//
// The API writes a service's claims first and its record after. So a claim whose holder's record
// does not list the domain may be a PUT on its way; or what a PUT left behind when it failed
// half way, or a claim written by hand. It stays its holder's for CLAIM_PENDING_MS; after that,
// or at once when the holder was rewritten or deleted after the claim, it is stale.
import { isServiceName } from "./kv.js";

/** How long a claim its holder's record does not list stays the holder's: a PUT in progress. */
export const CLAIM_PENDING_MS = 60_000;

export interface ClaimFacts {
  /** The service the claim names. */
  holder: string;
  revision: number;
  /** When NATS stored the claim (ms since the epoch). */
  createdMs: number;
}

export interface HolderFacts {
  /** Whether the holder's record lists the domain (one that may be serving it: an invalid latest value may). */
  listsDomain: boolean;
  /** Revision of the holder's latest write (record or delete); undefined if it has none. */
  lastWriteRevision: number | undefined;
}

/** When the claim becomes stale (ms since the epoch): -Infinity if it is, Infinity if never while the facts hold. */
export function claimStaleAt(claim: ClaimFacts, holder: HolderFacts): number {
  // A value that names no possible service (empty, "x>"): nobody holds it.
  if (!isServiceName(claim.holder)) return -Infinity;
  if (holder.listsDomain) return Infinity;
  // Rewritten without the domain, or deleted, after claiming it.
  if ((holder.lastWriteRevision ?? 0) > claim.revision) return -Infinity;
  return claim.createdMs + CLAIM_PENDING_MS;
}
