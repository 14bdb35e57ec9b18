// A replica's pipeline: bucket entries → registry → snapshot store, and the readiness gate.
//
// Entries are applied as they arrive and committed together once the entries received so far
// have been applied, so a single change is pushed at once and a burst becomes a few commits; the
// initial load is one commit.
// The store opens to Envoy only once the whole bucket is loaded, including the history lookups
// that find the last good revision of services whose latest value is invalid or conflicting.
import { BucketWatcher, claimHolder, openBucket, parseKey, SERVICE_PREFIX, serviceKey, type BucketEntry, type NatsLink, type RegistrySettings } from "@envoyage/registry";
import type { Logger } from "pino";
import { Registry, type ClaimWrite } from "./registry.js";
import type { CommitStats, SnapshotStore } from "./snapshot.js";
import { LastGoodLookups } from "./last-good-lookups.js";
import { CommitScheduler, type BatchSettings } from "./commit-scheduler.js";
import { RejectionLog } from "./rejection-log.js";
import { IgnoredKeys, ignoredBecause } from "./ignored-keys.js";

export interface ReplicaOptions {
  link: NatsLink;
  settings: RegistrySettings;
  logger: Logger;
  store: SnapshotStore;
  batch: BatchSettings;
  events?: ReplicaEvents;
  /** Whether any Envoy is connected to this replica (see BatchSettings.standbyMs). */
  served: () => boolean;
}

/** Why a record is not pushed: invalid, in conflict, or refused by the pre-push validator. */
export const REJECTION_REASONS = ["invalid", "conflict", "validation"] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/** What the pipeline reports, for metrics. */
export interface ReplicaEvents {
  /** `live`: a change made after the initial load, whose watch lag means something. */
  entry(entry: BucketEntry, live: boolean): void;
  commit(stats: CommitStats): void;
  rejected(name: string, reason: RejectionReason): void;
}

const CLAIM_RETRY_MS = 2000;

export class Replica {
  readonly registry = new Registry();
  readonly #options: ReplicaOptions;
  readonly #watcher: BucketWatcher;
  readonly #lookups: LastGoodLookups;
  /** Services changed since the last commit, whose status may need reporting. */
  readonly #touched = new Set<string>();
  /** Last reported problem per service, so each is logged once. */
  readonly #reported = new Map<string, string>();
  /** Services whose latest change failed the pre-push validator (they keep their previous resources). */
  readonly failedValidation = new Map<string, string[]>();
  /** Keys of the bucket the registry does not take, and why. */
  readonly ignoredKeys: IgnoredKeys;
  readonly #rejectionLog: RejectionLog;
  readonly #startedAt = performance.now();
  #loaded = false;
  /**
   * Loading the bucket, at start or after it was created again: nothing is committed until it is
   * loaded and every history lookup is in, so Envoy never gets a registry half known.
   */
  #loading = true;
  /** Domains whose claim this replica is writing, and for whom. */
  readonly #claimsInFlight = new Map<string, string>();
  #claimRetry: NodeJS.Timeout | undefined;
  /** Claim writes fail (NATS unreachable, the bucket full): said once, until one gets through. */
  #claimsFailing = false;
  /** Domains whose claim changed while this replica's write of it was in flight. */
  readonly #claimsToRecheck = new Set<string>();
  /** The next commit looks at the claims of every served domain, not only those of the services it evaluated. */
  #recheckAllClaims = false;
  #stopped = false;
  /** Earliest write (server time) applied since the last commit. */
  #firstWriteAt: number | undefined;
  #commits = 0;
  readonly #scheduler: CommitScheduler;

  constructor(options: ReplicaOptions) {
    this.#options = options;
    this.ignoredKeys = new IgnoredKeys(options.logger);
    this.#rejectionLog = new RejectionLog(options.logger);
    const { settings } = options;
    this.#watcher = new BucketWatcher({
      link: options.link,
      bucket: settings.bucket,
      timeoutMs: settings.natsTimeoutMs,
      open: (nc) =>
        openBucket(nc, { bucket: settings.bucket, create: false, timeoutMs: settings.natsTimeoutMs }),
      logger: options.logger,
      handlers: { entry: (entry) => this.#apply(entry), loaded: () => this.#onLoaded(), recreated: () => this.#startOver() },
    });
    this.#scheduler = new CommitScheduler({
      batch: options.batch,
      commit: () => this.#commit(),
      standby: () => options.store.ready && !options.served(),
      pendingEntries: () => this.#watcher.pending,
    });
    this.#lookups = new LastGoodLookups({
      history: (key) => this.#watcher.history(key),
      histories: () => this.#watcher.histories(SERVICE_PREFIX),
      wanted: (name, latest) => this.registry.awaitsHistory(name, latest),
      settled: (name, latest, older) => {
        this.registry.setHistory(name, latest, older);
        this.#touched.add(name);
        // Loading, the results are committed together once the last lookup is in: every commit
        // that changes what is served assembles the whole route table.
        if (!this.#loading || this.#lookups.pending === 0) this.#scheduleCommit();
      },
      logger: options.logger,
    });
  }

  get ready(): boolean {
    return this.#options.store.ready;
  }

  /** Revision of the last bucket entry applied. */
  get revision(): number {
    return this.#watcher.revision;
  }

  /** Revision the committed snapshot reflects: behind `revision` while a burst's commit waits. */
  get committedRevision(): number {
    const store = this.#options.store;
    return store.commitMeta(store.serial)?.revision ?? 0;
  }

  /** How many times the registry was resolved and committed: which services are rejected, and why, changes only then. */
  get commits(): number {
    return this.#commits;
  }

  start(): Promise<void> {
    return this.#watcher.start();
  }

  /**
   * An Envoy connected: a commit this replica held back as a standby runs before the Envoy is
   * answered, so an Envoy failing over from a replica that pushed a change never goes back to
   * the config from before it.
   */
  envoyConnected(): void {
    this.#scheduler.flush();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#scheduler.stop();
    this.#lookups.clear();
    clearTimeout(this.#claimRetry);
    this.#rejectionLog.stop();
    await this.#watcher.stop();
  }

  #apply(entry: BucketEntry): void {
    this.#options.events?.entry(entry, this.#loaded);
    this.#scheduler.entryArrived();
    const key = parseKey(entry.key);
    let owner: string | undefined;
    if (key.kind === "service") {
      if (this.registry.setService(key.name, entry.revision, entry.value)) {
        this.#lookups.request(key.name, entry.key, entry.revision);
      }
      this.#touched.add(key.name);
    } else if (key.kind === "claim") {
      owner = entry.value ? claimHolder(entry.value) : undefined;
      // A claim naming no possible service stays in the registry: nobody lists its domain, so a
      // service serving the domain takes it over with compare-and-set, from its revision.
      this.registry.setClaim(key.domain, owner, entry.revision);
      // Another claim landed while this replica's write of it is in flight: the commit it
      // triggers skips the domain, so its server looks again once the write is answered. (The
      // write's own echo, or another replica's same write, changes nothing.)
      const writing = this.#claimsInFlight.get(key.domain);
      if (writing !== undefined && owner !== writing) this.#claimsToRecheck.add(key.domain);
    }
    this.ignoredKeys.set(entry.key, entry.revision, ignoredBecause(entry.key, key, entry.value, owner));
    // Only a live registry change is timed (a bucket being loaded holds writes of days ago). An
    // ignored key is still committed (a commit without changes): Envoys holding the current
    // snapshot hold its revision too.
    if (this.#loaded && (key.kind === "service" || key.kind === "claim")) this.#firstWriteAt = Math.min(this.#firstWriteAt ?? Infinity, entry.created.getTime());
    this.#scheduleCommit();
  }

  /**
   * The registry bucket was deleted and created again. Nothing is committed until the new one is
   * loaded, history lookups included: Envoy keeps what it has meanwhile, then gets the difference
   * in one push.
   */
  #startOver(): void {
    this.#loaded = false;
    this.#loading = true;
    this.#lookups.clear(); // histories of the deleted bucket's keys
    this.registry.forgetAll();
    this.ignoredKeys.clear();
    this.#firstWriteAt = undefined; // writes to the bucket that is gone
    this.#options.store.forgetRevisions();
  }

  #onLoaded(): void {
    this.#loaded = true;
    this.#scheduleCommit();
  }

  /**
   * Nothing is committed before the bucket is loaded: nobody is served until then, and one commit
   * of the whole registry costs less than one every window (each assembles the route table).
   */
  #scheduleCommit(): void {
    if (this.#loaded) this.#scheduler.schedule();
  }

  #commit(): void {
    // A commit scheduled before the bucket was created again (a burst's window, a standby's
    // delay) would serve the new bucket half read: the load's own commit comes once it is in.
    if (!this.#loaded) return;
    const { store, logger } = this.#options;
    const { changes, evaluated, historyLookups } = this.registry.resolve();
    for (const { name, revision } of historyLookups) this.#lookups.request(name, serviceKey(name), revision);
    const changed = new Set<string>();
    for (const change of changes) {
      this.#touched.add(change.name);
      changed.add(change.name);
      if (change.record) store.setService(change.name, change.record);
      else store.removeService(change.name);
    }
    // Staged in the store, committed with the last lookup's result (and only then counted: the
    // status pages of rejected services are built from a registry Envoys are served).
    if (this.#loading && this.#lookups.pending > 0) return;
    this.#commits++;
    const stats = store.commit({ revision: this.revision, firstWriteAt: this.#firstWriteAt });
    this.#firstWriteAt = undefined;
    // A commit that only refused again what it refused before changed nothing: not counted.
    if (stats && stats.changed.length > 0) {
      logger.debug({ serial: stats.serial, revision: this.revision, ms: stats.durationMs }, "snapshot committed");
      this.#options.events?.commit(stats);
    }
    const refusedBefore = new Set(this.failedValidation.keys());
    this.failedValidation.clear();
    for (const { name, problems } of stats?.rejected ?? []) {
      this.failedValidation.set(name, problems);
      if (refusedBefore.has(name) && !changed.has(name)) continue; // said when it was first refused
      // A route configuration grown past its limit, or a bug upstream (the registry keeps
      // domains unique), caught before Envoy.
      logger.error({ service: name, problems }, "pre-push validation rejected a service; it keeps its previous config");
      this.#options.events?.rejected(name, "validation");
    }
    this.#reportProblems();
    if (this.#loading) {
      this.#loading = false;
      this.#recheckAllClaims = true;
      if (!store.ready) {
        store.markReady();
        logger.info(
          { services: this.registry.servedCount, revision: this.revision, ms: Math.round(performance.now() - this.#startedAt) },
          "registry loaded: serving Envoy",
        );
      }
    }
    const everyClaim = this.#recheckAllClaims;
    this.#recheckAllClaims = false;
    this.#writeClaims(this.registry.claimsToWrite(everyClaim ? undefined : evaluated));
  }

  /** The next commit looks at every claim again, from the registry as resolved then. */
  #recheckAllClaimsSoon(): void {
    this.#recheckAllClaims = true;
    this.#scheduleCommit();
  }

  /**
   * Claims served domains whose claim is missing or names another service (records written with
   * the CLI, claims written by hand or left by a failed PUT); every replica tries, one wins.
   */
  #writeClaims(writes: ClaimWrite[]): void {
    const { logger } = this.#options;
    for (const { domain, owner, expectedRevision } of writes) {
      const writing = this.#claimsInFlight.get(domain);
      if (writing !== undefined) {
        // The domain changed hands while its claim is being written for the last server: look
        // again once that write is answered, or the new server's claim is never written.
        if (writing !== owner) this.#claimsToRecheck.add(domain);
        continue;
      }
      this.#claimsInFlight.set(domain, owner);
      // A write that lost waits for the claim that won, whose arrival looks again, unless it
      // arrived while the write was in flight (#apply).
      const settled = () => {
        this.#claimsInFlight.delete(domain);
        if (!this.#claimsToRecheck.delete(domain) || this.#stopped) return;
        this.registry.recheckClaim(domain);
        this.#scheduleCommit();
      };
      this.#watcher
        .writeClaim(domain, owner, expectedRevision)
        .then(
          (won) => {
            settled();
            if (this.#claimsFailing) {
              this.#claimsFailing = false;
              logger.info("claim writes get through again");
            }
            if (won) logger.info({ domain, service: owner, takeover: expectedRevision !== 0 }, "claimed a served domain");
          },
          (error: unknown) => {
            settled();
            if (this.#stopped) return;
            // Every unclaimed domain fails alike, every retry: the first says it for all of them.
            if (this.#claimsFailing) logger.debug({ err: error, domain, service: owner }, "could not claim a served domain; retrying");
            else logger.warn({ err: error, domain, service: owner }, `could not claim a served domain; retrying every ${CLAIM_RETRY_MS / 1000} s, further failures at debug level`);
            this.#claimsFailing = true;
            this.#claimRetry ??= setTimeout(() => {
              this.#claimRetry = undefined;
              this.#recheckAllClaimsSoon();
            }, CLAIM_RETRY_MS);
          },
        );
    }
  }

  #reportProblems(): void {
    for (const name of this.#touched) {
      // Said once its history is in (the lookup touches it again): until then what it serves,
      // and so what the log would say, may still change.
      if (this.registry.awaitsLastGood(name)) continue;
      const status = this.registry.status(name);
      const summary = status && status.state !== "serving" ? JSON.stringify(status) : undefined;
      if (summary === this.#reported.get(name)) continue;
      if (summary === undefined) {
        this.#reported.delete(name);
        continue;
      }
      this.#reported.set(name, summary);
      if (status && status.state !== "serving") {
        this.#options.events?.rejected(name, status.state);
        this.#rejectionLog.rejected(name, status);
      }
    }
    this.#touched.clear();
  }
}
