// Named subscriptions (the resource_names of EDS and RDS requests), interned: thousands of Envoys
// asking for the same names share one Set instead of holding a copy each.
import { hash } from "node:crypto";
import type { ResourceSet } from "./resources.js";

export class Subscription {
  readonly id: number;
  readonly key: string;
  readonly list: readonly string[];
  readonly names: ReadonlySet<string>;
  refs = 0;
  #coverage: { namesSerial: number; typeUrl: string; covers: boolean } | undefined;

  constructor(id: number, key: string, list: readonly string[]) {
    this.id = id;
    this.key = key;
    this.list = list;
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

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class SubscriptionPool {
  readonly #byKey = new Map<string, Subscription>();
  #nextId = 1;

  /**
   * The shared subscription for `names`. Envoy repeats the same list on every request of a type,
   * so the common case is a cheap comparison with the stream's current subscription.
   */
  intern(names: readonly string[], current: Subscription | undefined): Subscription {
    if (current && sameList(current.list, names)) return current;
    const key = hash("sha256", names.join("\n"), "base64");
    let subscription = this.#byKey.get(key);
    if (!subscription) {
      subscription = new Subscription(this.#nextId++, key, [...names]);
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
