// What a KV read or write came to, as both the records and the claims code need it.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KvEntry } from "@nats-io/kv";

/** An entry holding a value (not a delete or purge marker). */
export function isLive(entry: KvEntry | null): entry is KvEntry {
  return entry !== null && entry.operation === "PUT";
}

/** A compare-and-set that lost: the key is no longer at the expected revision. */
export function isWrongRevision(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence;
}
