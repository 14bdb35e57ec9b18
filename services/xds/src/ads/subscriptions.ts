// Named subscriptions (the resource names of EDS and RDS requests), interned: thousands of Envoys
// asking for the same names share one Set instead of holding a copy each. SotW lists are known by
// the bytes Envoy sent, delta subscriptions by their sorted names. Delta requests change a
// subscription by increments; a fleet making the same increment shares the computed result.
import { hash } from "node:crypto";
import type { ResourceSet } from "./resources.js";
import { ownedCopy } from "../wire.js";

export class Subscription {
  readonly id: number;
  readonly key: string;
  readonly names: ReadonlySet<string>;
  refs = 0;
  /** SotW: the names as Envoy sent them, to recognise the same list without decoding it. */
  raw: Buffer | undefined;
  #coverage: { namesSerial: number; typeUrl: string; covers: boolean } | undefined;

  constructor(id: number, key: string, list: readonly string[]) {
    this.id = id;
    this.key = key;
    this.names = new Set(list);
  }

  /** True when every resource of the set is subscribed (cached until names come or go). */
  covers(set: ResourceSet): boolean {
    const cached = this.#coverage;
    if (cached && cached.namesSerial === set.namesSerial && cached.typeUrl === set.typeUrl) return cached.covers;
    let covers = set.size <= this.names.size;
    if (covers) {
      for (const resource of set.values()) {
        if (!this.names.has(resource.name)) {
          covers = false;
          break;
        }
      }
    }
    this.#coverage = { namesSerial: set.namesSerial, typeUrl: set.typeUrl, covers };
    return covers;
  }
}

const MAX_TRANSITIONS = 4096;

function keyOf(names: readonly string[]): string {
  return hash("sha256", names.join("\n"), "base64");
}

export class SubscriptionPool {
  readonly #byKey = new Map<string, Subscription>();
  /** (subscription id, increment) → resulting subscription key, for delta streams in lockstep. */
  readonly #transitions = new Map<string, string>();
  #nextId = 1;

  /**
   * The shared subscription for a SotW request's names, given as the raw bytes of their fields.
   * Envoy repeats the same list on every request of a type, so the common case is comparing the
   * bytes with the stream's current subscription; the names are decoded only for a new list.
   */
  intern(raw: Buffer, decode: (raw: Buffer) => readonly string[], current: Subscription | undefined): Subscription {
    if (current?.raw?.equals(raw)) return current;
    const subscription = this.#acquire(`raw:${hash("sha256", raw, "base64")}`, () => [...decode(raw)], current);
    // A copy of its own: neither the request's buffer nor a pool slab (wire.ts) is kept alive.
    subscription.raw ??= ownedCopy(raw);
    return subscription;
  }

  /** The subscription after a delta request's subscribe/unsubscribe lists ("*" is not a name). */
  change(current: Subscription | undefined, subscribe: readonly string[], unsubscribe: readonly string[]): Subscription {
    const transition = `${current?.id ?? 0}|${keyOf(subscribe)}|${keyOf(unsubscribe)}`;
    let key = this.#transitions.get(transition);
    let list: string[] | undefined;
    if (key === undefined || !this.#byKey.has(key)) {
      const names = new Set(current?.names);
      for (const name of subscribe) if (name !== "*") names.add(name);
      for (const name of unsubscribe) names.delete(name);
      list = [...names].sort();
      key = keyOf(list);
      if (this.#transitions.size >= MAX_TRANSITIONS) this.#transitions.clear();
      this.#transitions.set(transition, key);
    }
    return this.#acquire(key, () => list!, current);
  }

  #acquire(key: string, list: () => readonly string[], current: Subscription | undefined): Subscription {
    let subscription = this.#byKey.get(key);
    if (subscription === current && current) return current;
    if (!subscription) {
      subscription = new Subscription(this.#nextId++, key, list());
      this.#byKey.set(key, subscription);
    }
    subscription.refs++;
    if (current) this.release(current);
    return subscription;
  }

  release(subscription: Subscription): void {
    if (--subscription.refs <= 0) this.#byKey.delete(subscription.key);
  }

  get size(): number {
    return this.#byKey.size;
  }
}
