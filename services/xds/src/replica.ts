// A replica's pipeline: bucket entries → registry → snapshot store, and the readiness gate.
//
// Entries are applied as they arrive and committed together once the current burst has been
// read (setImmediate), so a single change is pushed at once and a burst becomes a few commits.
// The store opens to Envoy only once the whole bucket is loaded, including the history lookups
// that find the last good revision of services whose latest value is invalid.
import { decodeRecord, parseKey, type NatsLink, type RegistrySettings } from "@envoyage/registry";
import type { Logger } from "pino";
import { Registry, type EffectiveRecord } from "./registry.js";
import type { SnapshotStore } from "./snapshot.js";
import { BucketWatcher, type BucketEntry } from "./watch.js";

export interface ReplicaOptions {
  link: NatsLink;
  settings: RegistrySettings;
  logger: Logger;
  store: SnapshotStore;
}

const LOOKUP_RETRY_MS = 500;
const utf8 = new TextDecoder();

export class Replica {
  readonly registry = new Registry();
  readonly #options: ReplicaOptions;
  readonly #watcher: BucketWatcher;
  readonly #lookups = new Set<string>();
  /** Services changed since the last commit, whose status may need reporting. */
  readonly #touched = new Set<string>();
  /** Last reported problem per service, so each is logged once. */
  readonly #reported = new Map<string, string>();
  readonly #startedAt = performance.now();
  #loaded = false;
  #commitScheduled = false;
  #stopped = false;

  constructor(options: ReplicaOptions) {
    this.#options = options;
    this.#watcher = new BucketWatcher({
      link: options.link,
      settings: options.settings,
      logger: options.logger,
      handlers: { entry: (entry) => this.#apply(entry), loaded: () => this.#onLoaded() },
    });
  }

  get ready(): boolean {
    return this.#options.store.ready;
  }

  /** Revision of the last bucket entry applied. */
  get revision(): number {
    return this.#watcher.revision;
  }

  start(): Promise<void> {
    return this.#watcher.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#watcher.stop();
  }

  #apply(entry: BucketEntry): void {
    const key = parseKey(entry.key);
    if (key.kind === "service") {
      if (this.registry.setService(key.name, entry.revision, entry.value)) {
        void this.#lookUpLastGood(key.name, entry.key, entry.revision);
      }
      this.#touched.add(key.name);
    } else if (key.kind === "claim") {
      this.registry.setClaim(key.domain, entry.value ? utf8.decode(entry.value).trim() : undefined);
    } else {
      this.#options.logger.debug({ key: entry.key }, "ignoring a key outside the registry layout");
      return;
    }
    this.#scheduleCommit();
  }

  /** Finds the newest valid revision before `latest` in the key's history (the last good config). */
  async #lookUpLastGood(name: string, key: string, latest: number): Promise<void> {
    this.#lookups.add(key);
    let fallback: EffectiveRecord | undefined;
    for (;;) {
      try {
        for (const entry of await this.#watcher.history(key)) {
          if (entry.revision >= latest) continue;
          if (entry.value === undefined) break; // deleted before: nothing good to fall back to
          const decoded = decodeRecord(entry.value);
          if (decoded.ok) {
            fallback = { record: decoded.record, revision: entry.revision };
            break;
          }
        }
        break;
      } catch (error) {
        if (this.#stopped) return;
        this.#options.logger.warn({ err: error, service: name }, "history lookup failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, LOOKUP_RETRY_MS));
      }
    }
    this.#lookups.delete(key);
    this.registry.setFallback(name, latest, fallback);
    this.#touched.add(name);
    this.#scheduleCommit();
  }

  #onLoaded(): void {
    this.#loaded = true;
    this.#scheduleCommit();
  }

  #scheduleCommit(): void {
    if (this.#commitScheduled) return;
    this.#commitScheduled = true;
    setImmediate(() => {
      this.#commitScheduled = false;
      this.#commit();
    });
  }

  #commit(): void {
    const { store, logger } = this.#options;
    for (const change of this.registry.resolve()) {
      this.#touched.add(change.name);
      if (change.record) store.setService(change.name, change.record);
      else store.removeService(change.name);
    }
    const stats = store.commit();
    if (stats) logger.debug({ serial: stats.serial, revision: this.revision, ms: stats.durationMs }, "snapshot committed");
    this.#reportProblems();
    if (this.#loaded && this.#lookups.size === 0 && !store.ready) {
      store.markReady();
      logger.info(
        { services: this.registry.servedCount, revision: this.revision, ms: Math.round(performance.now() - this.#startedAt) },
        "registry loaded: serving Envoy",
      );
    }
  }

  #reportProblems(): void {
    const { logger } = this.#options;
    for (const name of this.#touched) {
      const status = this.registry.status(name);
      const summary = status && status.state !== "serving" ? JSON.stringify(status) : undefined;
      if (summary === this.#reported.get(name)) continue;
      if (summary === undefined) {
        this.#reported.delete(name);
        continue;
      }
      this.#reported.set(name, summary);
      if (status?.state === "invalid") {
        logger.warn(
          { service: name, revision: status.revision, problem: status.problem, servingRevision: status.servingRevision ?? null },
          status.servingRevision === undefined
            ? "rejected an invalid record; the service is not served"
            : "rejected an invalid record; the last good revision keeps serving",
        );
      } else if (status?.state === "conflict") {
        logger.warn({ service: name, revision: status.revision, conflicts: status.conflicts }, "rejected a record claiming domains another service holds");
      }
    }
    this.#touched.clear();
  }
}
