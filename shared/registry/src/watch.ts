// A bucket watcher: it delivers every key's latest value in revision order, says when the initial
// load is complete, and survives NATS going away: the watch resumes from the last revision it
// applied, so no change made meanwhile is missed, and a watch that stalls is restarted. A bucket
// that was deleted and created again (a restarted nats-server loses a memory bucket) has new
// revisions: the watcher says so and starts over from it. The xDS replicas follow the registry
// with it; the API follows the registry and the status bucket.
import { setTimeout as delay } from "node:timers/promises";
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection, QueuedIterator } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { BucketMissingError, claimKey } from "./kv.js";
import type { NatsLink } from "./nats.js";
import { StoredRevisions, watchedEntry, type BucketEntry } from "./stored-revisions.js";

export interface WatchHandlers {
  entry(entry: BucketEntry): void;
  /** The bucket's state as of the watch's start has been delivered (the readiness gate). */
  loaded(): void;
  /**
   * The bucket was deleted and created again: everything delivered so far is void. The watch
   * starts over with the new bucket's latest values, then calls loaded() again.
   */
  recreated(): void;
}

export interface BucketWatcherOptions {
  link: NatsLink;
  /** Binds to (or creates) the bucket; retried until it succeeds. */
  open: (nc: NatsConnection) => Promise<KV>;
  /** Names the bucket in logs. */
  bucket: string;
  /** Bound on each request the watcher makes itself (NATS_TIMEOUT_MS), as on the bucket's. */
  timeoutMs: number;
  logger: Logger;
  handlers: WatchHandlers;
}

const RETRY_MS = 500;
/** How often the watchdog compares the bucket's last revision with the last one applied. */
const WATCHDOG_MS = 500;
/** After moving to another node of a cluster: how often, and for how long, it compares closely. */
const CLOSE_WATCH_MS = 100;
const CLOSE_WATCH_FOR_MS = 3000;

export class BucketWatcher {
  readonly #options: BucketWatcherOptions;
  #kv: KV | undefined;
  /** What the bucket's stream stores; undefined until bound. */
  #stored: StoredRevisions | undefined;
  /** Creation time of the bucket's stream when first watched: another one means it was created again. */
  #createdAt: string | undefined;
  /** The watch, once the loop has set it up (undefined in between). */
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #generation = 0;
  #lastRevision = 0;
  #loaded = false;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  /** The revision seen behind at the previous watchdog check, if the watch was behind. */
  #behindAt: number | undefined;
  /** The revision applied when the bucket was first seen behind it (its stream emptied?), if it was at the previous check. */
  #aheadOfBucketAt: number | undefined;
  /** Why the watch loop must start over from the bucket's current state (its stream came back empty, or was purged), if it must. */
  #startOverBecause: string | undefined;
  /**
   * The revision of each key whose latest entry delivered is a value: a stream purge removes
   * those without a delete marker (#wasPurged). Not kept for a bucket whose entries expire.
   */
  readonly #live = new Map<string, number>();
  /** The bucket's entries expire (max_age), which removes them without a marker too. */
  #expiring = false;
  /** The stream's first sequence at the last purge check that looked at #live. */
  #firstChecked = 0;
  /**
   * The stream's last sequence when it was found to hold nothing after the revision applied: its
   * newest messages are gone (status entries past their TTL, a compaction), so the watch is not
   * behind although the sequence is ahead of it.
   */
  #nothingAfterUpTo = 0;
  #nc: NatsConnection | undefined;
  /** The NATS server the connection is on, by name: a restarted one has the same. */
  #server: string | undefined;
  /** Stops listening to the link's events (on stop: the link may outlive the watcher). */
  #unfollowLink: (() => void) | undefined;
  /** Until then the watchdog checks every CLOSE_WATCH_MS instead of WATCHDOG_MS. */
  #watchCloselyUntil = 0;

  constructor(options: BucketWatcherOptions) {
    this.#options = options;
  }

  /** Revision of the last entry applied. */
  get revision(): number {
    return this.#lastRevision;
  }

  /** Entries received from NATS and not yet delivered: more of the same read are on their way. */
  get pending(): number {
    return this.#watch?.getPending() ?? 0;
  }

  /** Connects, binds to the bucket (waiting for it to exist) and starts watching. */
  async start(): Promise<void> {
    const nc = await this.#options.link.connect();
    this.#nc = nc;
    this.#server = nc.info?.server_name;
    await this.#bind(nc);
    if (this.#stopped) return;
    this.#unfollowLink = this.#options.link.onEvent((event) => {
      if (event === "reconnected") this.#reconnected();
    });
    this.#loop = this.#watchLoop();
    this.#scheduleCheck();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unfollowLink?.();
    clearTimeout(this.#watchdog);
    this.#restart();
    await this.#loop;
  }

  /**
   * A watch can stall without an error: in a cluster, the node holding its consumer may die
   * while this replica's own connection survives, and the client notices only after missed
   * heartbeats. If the bucket is ahead of us and we made no progress for a whole check,
   * restart the watch from where we are (unless what is ahead is gone: #nothingAfterUpTo). A
   * bucket that is gone, or was created again, restarts it too: the watch loop binds again and
   * starts over.
   */
  async #checkProgress(): Promise<void> {
    // While the loop sets up a watch there is nothing to restart: that can take seconds while a
    // cluster elects a meta leader, and restarting it then would only start it over and over.
    if (!this.#loaded || !this.#watch || !this.#kv || !this.#options.link.isConnected) return;
    try {
      const { streamInfo } = await this.#kv.status();
      const last = streamInfo.state.last_seq;
      if (streamInfo.created !== this.#createdAt || this.#hasEmptied(last) || this.#wasPurged(streamInfo.state.first_seq, last)) {
        // The client's watch may have re-attached to it by itself, at revisions it will not reach.
        this.#restart();
      } else if (last <= Math.max(this.#lastRevision, this.#nothingAfterUpTo)) {
        this.#behindAt = undefined;
      } else if (this.#behindAt === this.#lastRevision) {
        this.#behindAt = undefined;
        if (await this.#storedRevisions().holdsAnythingAfter(this.#lastRevision)) {
          this.#options.logger.warn({ bucket: this.#options.bucket, applied: this.#lastRevision, last }, "the bucket watch stalled; restarting it");
          this.#restart();
        } else {
          this.#nothingAfterUpTo = last;
        }
      } else {
        this.#behindAt = this.#lastRevision;
      }
    } catch (error) {
      // Gone: the watch loop binds again once it exists. Otherwise NATS is unreachable: the link
      // reports it, and the watch resumes when it returns.
      if (isStreamMissing(error)) this.#restart();
    }
  }

  /** Every revision of `key` still in the bucket's history, newest first (StoredRevisions.history). */
  history(key: string): Promise<BucketEntry[]> {
    return this.#storedRevisions().history(key);
  }

  /** Every revision of every key that starts with `prefix`, or undefined (StoredRevisions.histories). */
  histories(prefix: string): Promise<Map<string, BucketEntry[]> | undefined> {
    return this.#storedRevisions().histories(prefix);
  }

  #storedRevisions(): StoredRevisions {
    if (!this.#stored) throw new Error("the bucket is not bound yet");
    return this.#stored;
  }

  /**
   * Sets domains.<domain> = owner if the claim is still at `expectedRevision` (0: absent);
   * false when another writer (another replica, the API) changed it first.
   */
  async writeClaim(domain: string, owner: string, expectedRevision: number): Promise<boolean> {
    if (!this.#kv) throw new Error("the bucket is not bound yet");
    const key = claimKey(domain);
    try {
      if (expectedRevision === 0) await this.#kv.create(key, owner);
      else await this.#kv.update(key, owner, expectedRevision);
      return true;
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence) return false;
      throw error;
    }
  }

  /** Binds to the bucket, retrying until it can or the watcher stops. */
  async #bind(nc: NatsConnection): Promise<void> {
    const { bucket, logger } = this.#options;
    let warned = false;
    while (!this.#stopped) {
      try {
        const kv = await this.#options.open(nc);
        const jsm = await jetstreamManager(nc, { timeout: this.#options.timeoutMs, checkAPI: false });
        this.#stored = new StoredRevisions({ jsm, kv, bucket });
        this.#kv = kv;
        logger.info({ bucket }, "bound to KV bucket");
        return;
      } catch (error) {
        if (!warned) {
          if (error instanceof BucketMissingError) logger.warn(error.message);
          else logger.warn({ reason: (error as Error).message }, "cannot bind to the KV bucket yet (a NATS cluster may still be electing its leaders); retrying");
          warned = true;
        }
        await delay(RETRY_MS);
      }
    }
  }

  /**
   * A stream that comes back empty keeps its creation time (a memory stream of a cluster whose
   * nodes all restarted): its revisions went back. Stream info can also trail what a watch
   * delivered by a revision or two for a moment, so it counts only when, a check later, the
   * bucket has not even reached what was applied at the first sighting.
   */
  #hasEmptied(last: number): boolean {
    if (last >= this.#lastRevision) {
      this.#aheadOfBucketAt = undefined;
      return false;
    }
    if (this.#aheadOfBucketAt === undefined || last >= this.#aheadOfBucketAt) {
      this.#aheadOfBucketAt = this.#lastRevision;
      return false;
    }
    this.#aheadOfBucketAt = undefined;
    this.#startOverBecause = NEW_BUCKET;
    return true;
  }

  /**
   * A stream purge (nats stream purge, or one up to a sequence) removes messages without a delete
   * marker, so no watch hears of it: the keys whose values it removed would stay served here,
   * and vanish only on a replica that starts afresh. Once the watch has caught up (it delivered
   * every key's latest entry), a stream whose first sequence is past one of those values lost it.
   */
  #wasPurged(first: number, last: number): boolean {
    // Entries written since the last check are all past `first`: only a new first sequence can uncover a loss.
    if (this.#expiring || first === this.#firstChecked || last > this.#lastRevision) return false;
    this.#firstChecked = first;
    for (const revision of this.#live.values()) {
      if (revision < first) {
        this.#startOverBecause = PURGED;
        return true;
      }
    }
    return false;
  }

  /**
   * Back on the same server (by name), it restarted and our consumer died with it: watch again
   * from where we are. On another node of a cluster the consumer most likely lives on, and
   * creating one can fail for seconds while the cluster elects a new meta leader; only if it
   * lived on the node that died does the watch stall, so the watchdog looks closely for a while.
   */
  #reconnected(): void {
    const server = this.#nc?.info?.server_name;
    const restarted = server === this.#server;
    this.#server = server;
    if (restarted) {
      this.#restart();
      return;
    }
    this.#watchCloselyUntil = performance.now() + CLOSE_WATCH_FOR_MS;
    clearTimeout(this.#watchdog);
    this.#scheduleCheck();
  }

  /** The next watchdog check; one at a time, however long the bucket takes to answer. */
  #scheduleCheck(): void {
    const period = performance.now() < this.#watchCloselyUntil ? CLOSE_WATCH_MS : WATCHDOG_MS;
    const timer = setTimeout(async () => {
      await this.#checkProgress();
      // Not if stopped, or if a reconnect scheduled a closer check meanwhile.
      if (!this.#stopped && this.#watchdog === timer) this.#scheduleCheck();
    }, period);
    this.#watchdog = timer;
  }

  #restart(): void {
    this.#generation++;
    this.#watch?.stop();
  }

  async #watchLoop(): Promise<void> {
    const { logger } = this.#options;
    let failures = 0;
    while (!this.#stopped) {
      const generation = ++this.#generation;
      this.#watch = undefined;
      try {
        const kv = this.#kv!;
        const status = await kv.status();
        this.#createdAt ??= status.streamInfo.created;
        this.#stored!.directIs(status.streamInfo.config.allow_direct);
        this.#expiring = (status.streamInfo.config.max_age ?? 0) > 0;
        if (status.streamInfo.created !== this.#createdAt) this.#startOverBecause = NEW_BUCKET;
        if (this.#startOverBecause) this.#startOver(status.streamInfo.created, this.#startOverBecause);
        if (!this.#loaded && status.values === 0) {
          // An empty bucket delivers nothing. Its last sequence may still be past 0 (a purged
          // stream): the registry is as of it, which is the revision Envoys are synced to.
          this.#lastRevision = status.streamInfo.state.last_seq;
          this.#markLoaded();
        }
        const resumeFromRevision = this.#lastRevision > 0 ? this.#lastRevision + 1 : undefined;
        const watch = await kv.watch({ key: ">", resumeFromRevision });
        this.#watch = watch;
        this.#behindAt = undefined;
        if (generation !== this.#generation) watch.stop();
        logger.info({ bucket: this.#options.bucket, fromRevision: resumeFromRevision ?? "latest values" }, "watching the bucket");
        failures = 0;
        for await (const e of watch) {
          if (generation !== this.#generation) break;
          if (e.revision <= this.#lastRevision) continue;
          this.#lastRevision = e.revision;
          if (!this.#expiring) {
            if (e.operation === "PUT") this.#live.set(e.key, e.revision);
            else this.#live.delete(e.key);
          }
          this.#deliver(watchedEntry(e));
          // The first entry with nothing pending behind it ends the initial load.
          if (!this.#loaded && e.delta === 0) this.#markLoaded();
        }
      } catch (error) {
        // Said once per outage, not every retry.
        if (!this.#stopped) logger[failures++ === 0 ? "warn" : "debug"]({ err: error, bucket: this.#options.bucket }, "bucket watch failed; restarting it");
        if (isStreamMissing(error)) await this.#bind(await this.#options.link.connect());
      }
      if (this.#stopped) return;
      if (generation === this.#generation) await delay(RETRY_MS); // it ended on its own: back off
    }
  }

  /**
   * A handler that throws is a bug; the entry is reported and the watch goes on with the next
   * one, so one entry can neither stop the follower nor hold back its initial load.
   */
  #deliver(entry: BucketEntry): void {
    try {
      this.#options.handlers.entry(entry);
    } catch (error) {
      this.#options.logger.error({ err: error, bucket: this.#options.bucket, key: entry.key, revision: entry.revision }, "applying a bucket entry failed; it is skipped (a bug: please report it with this log line)");
    }
  }

  /** What was delivered is void (the bucket is a new one, or was purged): load it from scratch. */
  #startOver(createdAt: string, because: string): void {
    this.#options.logger.warn({ bucket: this.#options.bucket, appliedRevision: this.#lastRevision }, `${because}; starting over from its current state`);
    this.#createdAt = createdAt;
    this.#startOverBecause = undefined;
    this.#live.clear();
    this.#firstChecked = 0;
    this.#nothingAfterUpTo = 0;
    this.#lastRevision = 0;
    this.#loaded = false;
    this.#options.handlers.recreated();
  }

  #markLoaded(): void {
    this.#loaded = true;
    this.#options.handlers.loaded();
  }
}

const NEW_BUCKET = "the bucket is a new one (deleted and created again, or lost by a nats-server that restarted, as a memory bucket is)";
const PURGED = "entries the watch delivered are gone from the bucket without a delete marker (its stream was purged)";

function isStreamMissing(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}
