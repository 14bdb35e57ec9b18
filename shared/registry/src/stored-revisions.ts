// What a bucket's stream still stores, read with direct gets rather than consumers: every
// revision of a key (a service's last good config is looked up there), of every key at once (a
// replica loading thousands of them), and whether anything follows a revision (the watchdog).
// kv.history() creates a consumer per call, which the server keeps for minutes after; a few
// hundred lookups filled the stream's consumer limit.
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { KV, KvWatchEntry } from "@nats-io/kv";

export interface BucketEntry {
  key: string;
  revision: number;
  /** The value, or undefined when the key was deleted or purged. */
  value: Uint8Array | undefined;
  /** Server time of the write. */
  created: Date;
}

/** The most revisions NATS keeps per key. */
const MAX_HISTORY = 64;
/** Messages asked for per batch direct get when reading the histories of all keys (the server may send fewer). */
const BULK_BATCH = 10_000;

/** A watch's entry as a bucket entry. */
export function watchedEntry(e: KvWatchEntry): BucketEntry {
  return { key: e.key, revision: e.revision, value: e.operation === "PUT" ? e.value : undefined, created: e.created };
}

/** A message of the bucket's stream as an entry: a KV-Operation header marks a delete or purge. */
function storedEntry(key: string, message: StoredMsg): BucketEntry {
  const deleted = message.header?.get("KV-Operation");
  return { key, revision: message.seq, value: deleted ? undefined : message.data, created: message.time };
}

export class StoredRevisions {
  readonly #jsm: JetStreamManager;
  readonly #kv: KV;
  readonly #bucket: string;
  /** Whether the stream answers direct gets (allow_direct; buckets made by nats.js or the CLI do); undefined until read. */
  #direct: boolean | undefined;
  /** Whether the server answers a batch of messages in one direct get (nats-server 2.11 and later). */
  #batchDirect = true;

  constructor(options: { jsm: JetStreamManager; kv: KV; bucket: string }) {
    this.#jsm = options.jsm;
    this.#kv = options.kv;
    this.#bucket = options.bucket;
  }

  /** The stream's allow_direct, as its status read elsewhere says (a bucket created again may differ); read on first use otherwise. */
  directIs(allowDirect: boolean | undefined): void {
    this.#direct = allowDirect ?? false;
  }

  async #readsDirect(): Promise<boolean> {
    this.#direct ??= (await this.#kv.status()).streamInfo.config.allow_direct ?? false;
    return this.#direct;
  }

  /**
   * Whether the stream still holds a message after `revision`. Without direct gets (a bucket
   * made by hand) it cannot tell cheaply, and says it does: the watchdog restarts the watch.
   */
  async holdsAnythingAfter(revision: number): Promise<boolean> {
    if (!(await this.#readsDirect())) return true;
    return (await this.#nextMessage(revision + 1, ">")) != null;
  }

  /**
   * Every revision of `key` still in the bucket's history, newest first. One batch direct get
   * reads them all (nats-server 2.11 and later); before, one direct get per revision. A bucket
   * made without direct gets (by hand) is read with kv.history() all the same.
   */
  async history(key: string): Promise<BucketEntry[]> {
    if (!(await this.#readsDirect())) {
      const entries: BucketEntry[] = [];
      for await (const e of await this.#kv.history({ key })) entries.push(watchedEntry(e));
      return entries.reverse();
    }
    // One batch direct get: a bucket keeps 64 revisions per key at most.
    const batch = await this.#batch(1, key, MAX_HISTORY);
    if (batch) return batch.map((message) => storedEntry(key, message)).reverse();
    const entries: BucketEntry[] = [];
    // Read to the end: a bucket made by hand may keep more revisions than ours (up to NATS's 64),
    // and the newest are the ones that matter.
    for (let seq = 1; ; ) {
      const message = await this.#nextMessage(seq, key);
      if (!message) break;
      entries.push(storedEntry(key, message));
      seq = message.seq + 1;
    }
    return entries.reverse();
  }

  /**
   * Every revision still in the bucket of every key that starts with `prefix`, by key, newest
   * first: a few batch direct gets for the whole stream, where a lookup per key is one request
   * each. Undefined when the stream or the server cannot answer that way (no direct gets,
   * nats-server before 2.11).
   */
  async histories(prefix: string): Promise<Map<string, BucketEntry[]> | undefined> {
    if (!(await this.#readsDirect())) return undefined;
    const subjectPrefix = `$KV.${this.#bucket}.`;
    const byKey = new Map<string, BucketEntry[]>();
    for (let seq = 1; ; ) {
      const batch = await this.#batch(seq, `${prefix}>`, BULK_BATCH);
      if (!batch) return undefined;
      if (batch.length === 0) break;
      for (const message of batch) {
        const key = message.subject.slice(subjectPrefix.length);
        let entries = byKey.get(key);
        if (!entries) byKey.set(key, (entries = []));
        entries.push(storedEntry(key, message));
      }
      seq = batch.at(-1)!.seq + 1;
    }
    for (const entries of byKey.values()) entries.reverse();
    return byKey;
  }

  /** With a direct get: the first message of keys matching `key` at sequence `seq` or after. */
  #nextMessage(seq: number, key: string): Promise<StoredMsg | null> {
    return this.#jsm.direct.getMessage(`KV_${this.#bucket}`, { seq, next_by_subj: `$KV.${this.#bucket}.${key}` });
  }

  /**
   * With a batch direct get: up to `batch` messages of keys matching `key` from sequence `seq` on,
   * oldest first (none: nothing there). Undefined when the server cannot answer a batch
   * (nats-server before 2.11), which is then not asked again.
   */
  async #batch(seq: number, key: string, batch: number): Promise<StoredMsg[] | undefined> {
    if (!this.#batchDirect) return undefined;
    const messages: StoredMsg[] = [];
    try {
      for await (const message of await this.#jsm.direct.getBatch(`KV_${this.#bucket}`, { seq, next_by_subj: `$KV.${this.#bucket}.${key}`, batch })) {
        messages.push(message);
      }
    } catch (error) {
      if (/batch direct require/.test((error as Error).message)) {
        this.#batchDirect = false;
        return undefined;
      }
      if ((error as { code?: unknown }).code !== 404) throw error; // 404: no message there
    }
    return messages;
  }
}
