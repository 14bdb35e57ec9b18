// Publishes sync status to the status bucket (shared/registry/src/status.ts): this replica's
// report and one per Envoy stream — per type the version sent, accepted or rejected (with
// Envoy's error), and the bucket revision the Envoy holds completely. Changes are written every
// half second; everything is rewritten before it would expire, so a dead replica's entries go.
import { randomBytes } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { envoyReportKey, replicaReportKey, STATUS_TTL_MS, type EnvoyReport, type ReplicaReport } from "@envoyage/registry";
import type { Logger } from "pino";
import { TYPE_NAMES } from "./ads/resources.js";
import type { AdsEvents } from "./ads/server.js";
import type { AdsStream } from "./ads/stream.js";
import type { SnapshotStore } from "./snapshot.js";

const FLUSH_MS = 500;
const REFRESH_MS = STATUS_TTL_MS / 3;

interface Tracked {
  key: string;
  report: EnvoyReport;
  dirty: boolean;
}

export interface StatusPublisherOptions {
  replicaId: string;
  logger: Logger;
  store: SnapshotStore;
  /** This replica's report, minus the time stamp. */
  report: () => Omit<ReplicaReport, "updatedAt">;
}

export class StatusPublisher {
  readonly #options: StatusPublisherOptions;
  readonly #streams = new Map<AdsStream, Tracked>();
  /** Distinguishes this process's stream numbers from a previous run's. */
  readonly #epoch = randomBytes(4).toString("hex");
  #nextStream = 1;
  #kv: KV | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastRefresh = 0;
  #lastReplicaReport = "";
  #failing = false;

  constructor(options: StatusPublisherOptions) {
    this.#options = options;
  }

  /** Opens the status bucket (retrying until it can) and publishes from then on. */
  async start(open: () => Promise<KV>): Promise<void> {
    this.#timer = setInterval(() => void this.flush(), FLUSH_MS);
    while (!this.#kv && this.#timer) {
      try {
        this.#kv = await open();
      } catch (error) {
        this.#options.logger.warn({ err: error }, "cannot open the status bucket; retrying");
        await new Promise((resolve) => setTimeout(resolve, FLUSH_MS));
      }
    }
  }

  /** Writes what changed (and, when due, everything); called on a timer and at shutdown. */
  async flush(): Promise<void> {
    const kv = this.#kv;
    if (!kv) return;
    const now = Date.now();
    const refresh = now - this.#lastRefresh >= REFRESH_MS;
    // Each write, and what to mark for another try if it fails (undefined: the replica report).
    const writes: { done: Promise<unknown>; tracked: Tracked | undefined }[] = [];
    const replica = JSON.stringify(this.#options.report());
    if (refresh || replica !== this.#lastReplicaReport) {
      const report: ReplicaReport = { ...JSON.parse(replica), updatedAt: new Date(now).toISOString() };
      writes.push({ done: kv.put(replicaReportKey(this.#options.replicaId), JSON.stringify(report)), tracked: undefined });
      this.#lastReplicaReport = replica;
    }
    for (const [stream, tracked] of this.#streams) {
      if (!tracked.report.node) continue; // not identified yet
      this.#refreshRevision(stream, tracked);
      if (!tracked.dirty && !refresh) continue;
      tracked.report.updatedAt = new Date(now).toISOString();
      writes.push({ done: kv.put(tracked.key, JSON.stringify(tracked.report)), tracked });
      tracked.dirty = false;
      if (!tracked.report.connected) this.#streams.delete(stream); // written once; it expires
    }
    // Only what failed is written again: one entry NATS refuses does not make every flush rewrite all.
    const results = await Promise.allSettled(writes.map((write) => write.done));
    const failure = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
    results.forEach((result, i) => {
      if (result.status === "fulfilled") return;
      const tracked = writes[i]!.tracked;
      if (tracked) tracked.dirty = true;
      else this.#lastReplicaReport = "";
    });
    if (refresh) this.#lastRefresh = now;
    if (failure) {
      if (!this.#failing) this.#options.logger.warn({ err: failure.reason }, "cannot publish sync status; retrying");
      this.#failing = true;
    } else {
      if (this.#failing) this.#options.logger.info("publishing sync status again");
      this.#failing = false;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }

  events(): AdsEvents {
    const type = (typeUrl: string) => TYPE_NAMES[typeUrl] ?? typeUrl;
    const touch = (stream: AdsStream, change: (report: EnvoyReport) => void) => {
      const tracked = this.#streams.get(stream);
      if (!tracked) return;
      if (stream.nodeId) tracked.report.node = stream.nodeId;
      change(tracked.report);
      tracked.dirty = true;
    };
    const typeReport = (report: EnvoyReport, typeUrl: string) =>
      (report.types[type(typeUrl)] ??= { sent: null, acked: null, ackedAt: null, nacked: null });
    return {
      connect: (stream) => {
        const id = `${this.#epoch}-${this.#nextStream++}`;
        const now = new Date().toISOString();
        this.#streams.set(stream, {
          key: envoyReportKey(this.#options.replicaId, id),
          dirty: false, // published once Envoy has said who it is
          report: {
            node: "",
            replica: this.#options.replicaId,
            stream: this.#nextStream - 1,
            protocol: stream.protocol,
            connected: true,
            connectedAt: now,
            updatedAt: now,
            syncedRevision: null,
            types: {},
          },
        });
      },
      disconnect: (stream) => touch(stream, (report) => void (report.connected = false)),
      error: () => {},
      push: (stream, typeUrl, body) => touch(stream, (report) => void (typeReport(report, typeUrl).sent = body.version)),
      ack: (stream, typeUrl, version) =>
        touch(stream, (report) => {
          const entry = typeReport(report, typeUrl);
          entry.acked = version;
          entry.ackedAt = new Date().toISOString();
          entry.nacked = null;
        }),
      nack: (stream, typeUrl, version, _nonce, error) =>
        touch(stream, (report) => void (typeReport(report, typeUrl).nacked = { version, error, at: new Date().toISOString() })),
      stale: () => {},
      synced: (stream) => touch(stream, () => {}),
    };
  }

  /** The revision an Envoy holds grows with writes that did not change its config. */
  #refreshRevision(stream: AdsStream, tracked: Tracked): void {
    const revision = this.#options.store.commitMeta(stream.syncedSerial)?.revision ?? 0;
    if (stream.syncedSerial > 0 && revision !== tracked.report.syncedRevision) {
      tracked.report.syncedRevision = revision;
      tracked.dirty = true;
    }
  }
}
