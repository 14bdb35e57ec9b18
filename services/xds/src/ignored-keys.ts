// Bucket keys the registry does not take, with why: a key outside the layout (a typo such as
// `service.web`), a name under a prefix the API would refuse (`services.Web`), or a claim whose
// value names no possible service (empty, JSON). The replica never serves them; operators see
// them in GET /status and envoyage_registry_ignored_keys, and each in one warning.
import type { Logger } from "pino";
import { isServiceName, SERVICE_PREFIX, type ParsedKey } from "@envoyage/registry";

/** Most keys listed in a status report, and warned about one by one; the count covers them all. */
export const IGNORED_KEYS_LISTED = 100;

export interface IgnoredKey {
  revision: number;
  problem: string;
}

const LAYOUT = "the registry layout is services.<name> and domains.<domain>";

/** Why the registry does not take `key` with `value`, or undefined when it does. */
export function ignoredBecause(key: string, parsed: ParsedKey, value: Uint8Array | undefined, holder: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (parsed.kind === "other") return `outside the registry layout: ${LAYOUT}`;
  if (parsed.kind === "invalid") {
    const what = key.startsWith(SERVICE_PREFIX) ? "a service name (a lowercase DNS label)" : "a domain (a lowercase hostname)";
    return `"${key.slice(key.indexOf(".") + 1)}" is not ${what}`;
  }
  if (parsed.kind === "claim" && holder !== undefined && !isServiceName(holder)) {
    return `the claim names no service (${JSON.stringify(holder.slice(0, 64))} is not a service name): nobody holds the domain`;
  }
  return undefined;
}

export class IgnoredKeys {
  readonly #keys = new Map<string, IgnoredKey>();
  readonly #logger: Logger;
  /** Warnings given so far: a bucket shared with thousands of other keys gets one summary instead. */
  #warnings = 0;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  get count(): number {
    return this.#keys.size;
  }

  /** Records the latest value of `key`: ignored for `problem`, or (undefined) taken or deleted. */
  set(key: string, revision: number, problem: string | undefined): void {
    if (problem === undefined) {
      this.#keys.delete(key);
      return;
    }
    const known = this.#keys.get(key);
    this.#keys.set(key, { revision, problem });
    if (known?.problem === problem) return;
    this.#warnings++;
    if (this.#warnings <= IGNORED_KEYS_LISTED) this.#logger.warn({ key, revision, problem }, "ignoring a bucket key the registry does not take");
    else if (this.#warnings === IGNORED_KEYS_LISTED + 1) {
      this.#logger.warn({ warned: IGNORED_KEYS_LISTED }, "more bucket keys the registry does not take are not logged one by one: GET /status counts and lists them");
    }
  }

  /** The bucket was created again: its keys are gone. */
  clear(): void {
    this.#keys.clear();
  }

  /** At most IGNORED_KEYS_LISTED of them, in key order, for a report. */
  listed(): Record<string, IgnoredKey> {
    const keys = [...this.#keys.keys()].sort().slice(0, IGNORED_KEYS_LISTED);
    return Object.fromEntries(keys.map((key) => [key, this.#keys.get(key)!]));
  }
}
