// One replica's pages of one kind in the status bucket (shared/registry/src/status.ts): items,
// each already JSON, packed into page bodies within a size limit. Only pages whose body changed
// are written, and pages left over from when there were more items are deleted.
import type { KV } from "@nats-io/kv";

export interface PageFormat {
  prefix: string;
  suffix: string;
}

/** Envoy reports: `{"envoys":[<report>,…]}`. */
export const ENVOY_PAGES: PageFormat = { prefix: '{"envoys":[', suffix: "]}" };
/** Rejected services: `{"rejected":{"<name>":<why>,…}}`, each item a `"<name>":<why>` member. */
export const REJECTED_PAGES: PageFormat = { prefix: '{"rejected":{', suffix: "}}" };

/**
 * Packs items into page bodies of at most `maxBytes` bytes of UTF-8, keeping their order. An item
 * larger than a page on its own gets a page of its own.
 */
export function packPages(items: readonly string[], maxBytes: number, format: PageFormat): string[] {
  const frame = Buffer.byteLength(format.prefix) + Buffer.byteLength(format.suffix);
  const pages: string[] = [];
  let current: string[] = [];
  let size = frame;
  for (const item of items) {
    const bytes = Buffer.byteLength(item);
    if (current.length > 0 && size + 1 + bytes > maxBytes) {
      pages.push(format.prefix + current.join(",") + format.suffix);
      current = [];
      size = frame;
    }
    size += bytes + (current.length > 0 ? 1 : 0);
    current.push(item);
  }
  if (current.length > 0) pages.push(format.prefix + current.join(",") + format.suffix);
  return pages;
}

/** A write to the status bucket, and what to do if it fails. */
export interface StatusWrite {
  done: Promise<unknown>;
  failed: () => void;
}

export class StatusPages {
  /** A page's key; "*" gives the filter for every page. */
  readonly #key: (page: number | "*") => string;
  readonly #format: PageFormat;
  readonly #maxBytes: number;
  /** Each page's body as last written; undefined when it is to be written (again). */
  readonly #bodies: (string | undefined)[] = [];
  /**
   * Pages that may exist in the bucket, by number: those beyond the current count are deleted.
   * The numbers, not a count: a key written by hand with a page number of a billion is one
   * delete, not a billion.
   */
  readonly #inBucket = new Set<number>();
  /** The update whose writes are under way: its page count, and whether a delete failed. */
  #pending: { count: number; deleteFailed: boolean } | undefined;
  /** A write failed: the next update must happen even if the items did not change. */
  dirty = false;

  constructor(key: (page: number | "*") => string, format: PageFormat, maxBytes: number) {
    this.#key = key;
    this.#format = format;
    this.#maxBytes = maxBytes;
  }

  /** The writes that make the bucket hold `items`: the pages that changed (all when `refresh`) and deletes of those left over. */
  update(kv: KV, items: readonly string[], refresh: boolean): StatusWrite[] {
    this.dirty = false;
    const pages = packPages(items, this.#maxBytes, this.#format);
    const writes: StatusWrite[] = [];
    pages.forEach((body, page) => {
      if (!refresh && body === this.#bodies[page]) return;
      this.#bodies[page] = body;
      const failed = () => {
        if (page < this.#bodies.length) this.#bodies[page] = undefined;
        this.dirty = true;
      };
      writes.push({ done: kv.put(this.#key(page), body), failed });
    });
    this.#bodies.length = pages.length;
    const pending = { count: pages.length, deleteFailed: false };
    for (const page of this.#inBucket) {
      if (page < pages.length) continue;
      const failed = () => {
        pending.deleteFailed = true;
        this.dirty = true;
      };
      writes.push({ done: kv.delete(this.#key(page)), failed });
    }
    for (let page = 0; page < pages.length; page++) this.#inBucket.add(page);
    this.#pending = pending;
    return writes;
  }

  /** Takes the pages in the bucket as its own (an earlier process of this replica wrote them): the next update deletes those it does not need. */
  async adopt(kv: KV): Promise<void> {
    for await (const key of await kv.keys(this.#key("*"))) {
      const page = key.slice(key.lastIndexOf(".") + 1);
      if (/^\d{1,15}$/.test(page)) this.#inBucket.add(Number(page));
    }
  }

  /** The writes of the last update have all settled (and failed() been called for those that failed). */
  settled(): void {
    const pending = this.#pending;
    if (pending && !pending.deleteFailed) for (const page of this.#inBucket) if (page >= pending.count) this.#inBucket.delete(page);
    this.#pending = undefined;
  }
}
