// A service's earlier revisions, from its key's history: the replicas serve the newest valid one
// instead of an invalid latest value (its last good config), and the API judges claims by it.
import type { ServiceRecord } from "./record.js";
import { decodeRecord } from "./validation.js";
import type { BucketEntry } from "./stored-revisions.js";

export interface RecordRevision {
  record: ServiceRecord;
  revision: number;
}

/** The valid revisions before `latest` in a key's history (given newest first), newest first, back to the key's last delete. */
export function validRevisionsBefore(history: readonly BucketEntry[], latest: number): RecordRevision[] {
  const valid: RecordRevision[] = [];
  for (const entry of history) {
    if (entry.revision >= latest) continue;
    if (entry.value === undefined) break; // deleted: nothing before it belongs to this service
    const decoded = decodeRecord(entry.value);
    if (decoded.ok) valid.push({ record: decoded.record, revision: entry.revision });
  }
  return valid;
}
