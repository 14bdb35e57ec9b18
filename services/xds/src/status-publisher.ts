// Publishes sync status to the status bucket (shared/registry/src/status.ts): this replica's
// report, the services it rejects in pages, and its Envoy streams in pages — per type the version
// sent, accepted or rejected (with Envoy's error), and the bucket revision the Envoy holds
// completely. Every half second it writes what changed: a config change that every Envoy
// acknowledges rewrites a few pages, not one entry per Envoy. Everything is rewritten before it
// would expire, so a dead replica's entries go; a stream that closed is reported as disconnected
// for as long as an entry would have lived.
//
// A flush serializes every Envoy whose state changed, in one turn of the event loop: with 5,000
// Envoys taking a change, 25–50 ms that would hold up the Envoys not yet sent it. So a flush waits
// while pushes and ACKs keep coming, until they pause (or for MAX_DEFER_MS at most).
import type { KV } from "@nats-io/kv";
import {
  envoyPageKey,
  rejectedPageKey,
  replicaReportKey,
  STATUS_PAGE_BYTES,
  STATUS_TTL_MS,
  type EnvoyReport,
  type RejectedService,
  type ReplicaReport,
} from "@envoyage/registry";
import type { Logger } from "pino";
import { typeName } from "./ads/resources.js";
import type { AdsEvents } from "./ads/server.js";
import type { AdsStream } from "./ads/stream.js";
import type { SnapshotStore } from "./snapshot.js";
import { ENVOY_PAGES, REJECTED_PAGES, StatusPages, type StatusWrite } from "./status-pages.js";

const FLUSH_MS = 500;
/** Without an Envoy event for this long, a change has reached the fleet (or paused): flush. */
const QUIET_MS = 50;
const MAX_DEFER_MS = 2000;
const REFRESH_MS = STATUS_TTL_MS / 3;

interface Tracked {
  report: EnvoyReport;
  /** The report as JSON, until it changes. */
  json: string | undefined;
}

export interface StatusPublisherOptions {
  replicaId: string;
  logger: Logger;
  store: SnapshotStore;
  /** This replica's report, minus the time stamp. */
  report: () => Omit<ReplicaReport, "updatedAt">;
  /** The services whose latest record this replica does not serve, by name: the same object until that changes. */
  rejected: () => Record<string, RejectedService>;
  /** Largest page, in bytes (tests make it small). */
  pageBytes?: number;
}

export class StatusPublisher {
  readonly #options: StatusPublisherOptions;
  readonly #streams = new Map<AdsStream, Tracked>();
  /** Streams that closed, oldest first, reported as disconnected until they would have expired. */
  readonly #closed: (Tracked & { closedAt: number })[] = [];
  #nextStream = 1;
  readonly #envoyPages: StatusPages;
  readonly #rejectedPages: StatusPages;
  /** Something about the Envoys changed since the last flush. */
  #changed = false;
  #kv: KV | undefined;
  #open: (() => Promise<KV>) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When an Envoy event last came, and when the last flush started (performance.now()). */
  #lastEventAt = -Infinity;
  #lastFlushAt = -Infinity;
  #flushing: Promise<void> | undefined;
  #lastRefresh = 0;
  #lastReplicaReport = "";
  #lastRejected: Record<string, RejectedService> | undefined;
  #failing = false;
  #failures = 0;
  /** The bucket is not open, or may be gone (NATS restarted): open it before the next write. */
  #reopen = true;
  /** The last time formatted by #isoTime, and its text. */
  #isoMs = -1;
  #iso = "";

  constructor(options: StatusPublisherOptions) {
    this.#options = options;
    const pageBytes = options.pageBytes ?? STATUS_PAGE_BYTES;
    this.#envoyPages = new StatusPages((page) => envoyPageKey(options.replicaId, page), ENVOY_PAGES, pageBytes);
    this.#rejectedPages = new StatusPages((page) => rejectedPageKey(options.replicaId, page), REJECTED_PAGES, pageBytes);
  }

  /** Publishes from now on: every flush opens the status bucket first until it can. */
  async start(open: () => Promise<KV>): Promise<void> {
    this.#open = open;
    this.#timer = setTimeout(() => this.#tick(), FLUSH_MS);
    await this.flush();
  }

  #tick(): void {
    const now = performance.now();
    if (!this.#flushing && !flushWaits(now, this.#lastEventAt, this.#lastFlushAt)) void this.flush();
    if (this.#timer) this.#timer = setTimeout(() => this.#tick(), this.#flushing ? FLUSH_MS : QUIET_MS);
  }

  /** Writes what changed (and, when due, everything); one flush at a time. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    this.#lastFlushAt = performance.now();
    this.#flushing = this.#flush();
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
  }

  /** Flushes that failed (the bucket could not be opened, or a write was refused), since the start. */
  get failures(): number {
    return this.#failures;
  }

  /** NATS reconnected: it may be a restarted server that lost the bucket. */
  reconnected(): void {
    this.#reopen = true;
  }

  /** Writes what is left, if the bucket was ever open: a flush still opening it would wait for NATS. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#kv) await this.flush();
  }

  async #flush(): Promise<void> {
    // Counted once per flush, whichever step failed.
    let openFailed = false;
    // The bucket lives in memory: a nats-server that restarted lost it, and writes to it fail
    // until it exists again. At the start, after a reconnect or after a failed flush, open (and
    // so create) it first, and rewrite everything: what was written before may be gone with it.
    if (this.#reopen && this.#open) {
      try {
        const kv = await this.#open();
        // Pages an earlier process of this replica id left (it had more Envoys or rejected
        // services) are deleted by the next update, rather than read for up to 30 s more.
        await Promise.all([this.#envoyPages.adopt(kv), this.#rejectedPages.adopt(kv)]);
        this.#kv = kv;
        this.#reopen = false;
        this.#lastRefresh = 0;
      } catch (error) {
        // Said once per outage; writes are tried anyway if the bucket was open before.
        if (!this.#failing) this.#options.logger.warn({ reason: (error as Error).message }, "cannot open the status bucket yet (a NATS cluster may still be electing its leaders); retrying");
        this.#failing = true;
        openFailed = true;
      }
    }
    const now = Date.now();
    // Closed streams age out even while nothing can be written: they would pile up otherwise.
    while (this.#closed.length > 0 && now - this.#closed[0]!.closedAt >= STATUS_TTL_MS) {
      this.#closed.shift();
      this.#changed = true;
    }
    const kv = this.#kv;
    if (!kv) {
      if (openFailed) this.#failures++;
      return;
    }
    const refresh = now - this.#lastRefresh >= REFRESH_MS;
    const writes: StatusWrite[] = [];
    // Rejected services before the report: one connection publishes in order, so the API never
    // sees a new revision from this replica without the rejections that came with it.
    const rejected = this.#options.rejected();
    if (rejected !== this.#lastRejected || refresh || this.#rejectedPages.dirty) {
      this.#lastRejected = rejected;
      const members = Object.entries(rejected).map(([name, why]) => `${JSON.stringify(name)}:${JSON.stringify(why)}`);
      writes.push(...this.#rejectedPages.update(kv, members, refresh));
    }
    const current = this.#options.report();
    const replica = JSON.stringify(current);
    if (refresh || replica !== this.#lastReplicaReport) {
      const report: ReplicaReport = { ...current, updatedAt: this.#isoTime(now) };
      writes.push({ done: kv.put(replicaReportKey(this.#options.replicaId), JSON.stringify(report)), failed: () => (this.#lastReplicaReport = "") });
      this.#lastReplicaReport = replica;
    }
    for (const [stream, tracked] of this.#streams) this.#refreshRevision(stream, tracked, now);
    if (this.#changed || refresh || this.#envoyPages.dirty) {
      this.#changed = false;
      writes.push(...this.#envoyPages.update(kv, this.#currentReports(), refresh));
    }
    // Only what failed is written again: one write NATS refuses does not make every flush rewrite all.
    const results = await Promise.allSettled(writes.map((write) => write.done));
    const failure = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
    results.forEach((result, i) => {
      if (result.status === "rejected") writes[i]!.failed();
    });
    this.#envoyPages.settled();
    this.#rejectedPages.settled();
    if (refresh) this.#lastRefresh = now;
    if (failure || openFailed) this.#failures++;
    if (failure) {
      if (!this.#failing) this.#options.logger.warn({ err: failure.reason }, "cannot publish sync status; retrying");
      this.#failing = true;
      this.#reopen = true;
    } else if (!openFailed) {
      if (this.#failing) this.#options.logger.info("publishing sync status again");
      this.#failing = false;
    }
  }

  /** The reports to publish, as JSON: every identified stream, open or recently closed. */
  #currentReports(): string[] {
    const reports: string[] = [];
    for (const tracked of [...this.#streams.values(), ...this.#closed]) {
      if (!tracked.report.node) continue; // not identified yet
      tracked.json ??= JSON.stringify(tracked.report);
      reports.push(tracked.json);
    }
    return reports;
  }

  events(): AdsEvents {
    const touch = (stream: AdsStream, change: (report: EnvoyReport) => void) => {
      const tracked = this.#streams.get(stream);
      if (!tracked) return;
      if (stream.nodeId) tracked.report.node = stream.nodeId;
      change(tracked.report);
      this.#changedNow(tracked);
      this.#lastEventAt = performance.now();
    };
    const typeReport = (report: EnvoyReport, typeUrl: string) =>
      (report.types[typeName(typeUrl)] ??= { sent: null, acked: null, ackedAt: null, nacked: null });
    return {
      connect: (stream) => {
        const now = this.#isoTime(Date.now());
        this.#streams.set(stream, {
          json: undefined,
          report: {
            node: "", // published once Envoy has said who it is
            replica: this.#options.replicaId,
            stream: this.#nextStream++,
            protocol: stream.protocol,
            connected: true,
            connectedAt: now,
            updatedAt: now,
            syncedRevision: null,
            types: {},
          },
        });
      },
      disconnect: (stream) => {
        touch(stream, (report) => void (report.connected = false));
        const tracked = this.#streams.get(stream);
        this.#streams.delete(stream);
        if (tracked?.report.node) this.#closed.push({ ...tracked, closedAt: Date.now() });
      },
      error: () => {},
      push: (stream, typeUrl, body) => touch(stream, (report) => void (typeReport(report, typeUrl).sent = body.version)),
      ack: (stream, typeUrl, version) =>
        touch(stream, (report) => {
          const entry = typeReport(report, typeUrl);
          entry.acked = version;
          entry.ackedAt = this.#isoTime(Date.now());
          entry.nacked = null;
        }),
      nack: (stream, typeUrl, version, _nonce, error) =>
        touch(stream, (report) => void (typeReport(report, typeUrl).nacked = { version, error, at: this.#isoTime(Date.now()) })),
      stale: () => {},
      // Every type acknowledged at the current state: no rejection is current any more (a
      // change Envoy NACKed may have been written back to the version it holds, sending nothing).
      synced: (stream) =>
        touch(stream, (report) => {
          for (const type of Object.values(report.types)) type.nacked = null;
        }),
    };
  }

  #changedNow(tracked: Tracked, now = Date.now()): void {
    tracked.report.updatedAt = this.#isoTime(now);
    tracked.json = undefined;
    this.#changed = true;
  }

  /**
   * `ms` as an ISO time, formatted once per millisecond: a change reaching a thousand Envoys
   * stamps thousands of pushes and ACKs within the same few milliseconds, and formatting each
   * was 7% of the replica's CPU in that fan-out.
   */
  #isoTime(ms: number): string {
    if (ms !== this.#isoMs) {
      this.#isoMs = ms;
      this.#iso = new Date(ms).toISOString();
    }
    return this.#iso;
  }

  /**
   * The revision an Envoy holds grows with writes that did not change its config. A commit too
   * old to be remembered (an Envoy NACKing through a thousand commits) leaves it as reported.
   */
  #refreshRevision(stream: AdsStream, tracked: Tracked, now: number): void {
    const revision = this.#options.store.commitMeta(stream.syncedSerial)?.revision;
    if (stream.syncedSerial > 0 && revision !== undefined && revision !== tracked.report.syncedRevision) {
      tracked.report.syncedRevision = revision;
      this.#changedNow(tracked, now);
    }
  }
}

/** A flush waits while Envoy events keep coming, but not for long after the last flush. */
export function flushWaits(now: number, lastEventAt: number, lastFlushAt: number): boolean {
  return now - lastEventAt < QUIET_MS && now - lastFlushAt < MAX_DEFER_MS;
}
