// Prometheus metrics of a replica (GET /metrics on XDS_HTTP_PORT): streams, pushes, ACKs and
// NACKs by type, the bucket watch, commits, rejected records, and convergence — the time from a
// KV write to the moment an Envoy has acknowledged everything that write changed.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type CounterConfiguration, type LabelValues } from "prom-client";
import { TYPE_NAMES, typeName } from "./ads/resources.js";
import type { AdsEvents } from "./ads/server.js";
import { PROTOCOL_NAMES, type AdsStream, type ProtocolName } from "./ads/stream.js";
import { DEFAULT_STALL_MS } from "./ads/write-budget.js";
import { REJECTION_REASONS, type ReplicaEvents } from "./replica.js";
import { COMMIT_HISTORY, type SnapshotStore } from "./snapshot.js";

const LATENCY_BUCKETS = [0.001, 0.002, 0.004, 0.006, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Counts of events by label values, kept as plain numbers and copied into their counter when
 * scraped: every push and ACK of a fan-out counts, and prom-client hashing the labels of each was
 * ~3% of a replica's CPU bringing a change to 1,000 streams (and the 20,000 entries of a cold
 * start count too).
 */
class EventCounts<L extends string> {
  readonly #counts = new Map<string, { labels: LabelValues<L>; value: number }>();

  /** Counts `value` for `key`, which stands for the label values `labels` gives. */
  add(key: string, labels: () => LabelValues<L>, value = 1): void {
    const entry = this.#counts.get(key);
    if (entry) entry.value += value;
    else this.#counts.set(key, { labels: labels(), value });
  }

  /** The counter that reports these counts. */
  counter(configuration: Omit<CounterConfiguration<L>, "collect">): Counter<L> {
    const counts = this.#counts;
    return new Counter({
      ...configuration,
      collect() {
        this.reset();
        for (const { labels, value } of counts.values()) this.inc(labels, value);
      },
    });
  }
}

export interface MetricSources {
  streamCounts(): Record<ProtocolName, number>;
  writes(): { inFlightBytes: number; queued: number; stalled: number };
  services(): { served: number; invalid: number; conflict: number };
  ignoredKeys(): number;
  ready(): boolean;
  revision(): number;
  /** Flushes of sync status to the status bucket that failed (status-publisher.ts). */
  statusPublishFailures(): number;
}

export class XdsMetrics {
  readonly registry = new Registry();
  readonly #store: SnapshotStore;
  readonly #syncedAt = new WeakMap<AdsStream, number>();
  readonly #pushes = new EventCounts<"type" | "protocol">();
  readonly #pushBytes = new EventCounts<"type">();
  readonly #acks = new EventCounts<"type">();
  readonly #nacks = new EventCounts<"type">();
  readonly #stale = new EventCounts<"type">();
  readonly #convergence: Histogram;
  readonly #watchLag: Histogram;
  readonly #entries = new EventCounts<"kind">();
  readonly #commits: Counter;
  readonly #commitDuration: Histogram;
  readonly #rejected: Counter<"reason">;

  constructor(store: SnapshotStore, sources: MetricSources) {
    this.#store = store;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "envoyage_xds_streams",
      help: "Open ADS streams (connected Envoys), by protocol.",
      labelNames: ["protocol"],
      registers,
      collect() {
        for (const [protocol, count] of Object.entries(sources.streamCounts())) this.set({ protocol }, count);
      },
    });
    new Gauge({
      name: "envoyage_xds_write_bytes_in_flight",
      help: "Response bytes handed to streams and not yet flushed (bounded by XDS_WRITE_BUDGET_MB).",
      registers,
      collect() {
        this.set(sources.writes().inFlightBytes);
      },
    });
    new Gauge({
      name: "envoyage_xds_writes_queued",
      help: "Streams whose next response waits for the write budget (a fleet syncing at once).",
      registers,
      collect() {
        this.set(sources.writes().queued);
      },
    });
    new Counter({
      name: "envoyage_xds_stalled_streams_total",
      help: `Streams dropped because their Envoy left a response unflushed for ${DEFAULT_STALL_MS / 1000} s (not reading).`,
      registers,
      collect() {
        this.reset();
        this.inc(sources.writes().stalled);
      },
    });
    new Counter({
      name: "envoyage_xds_status_publish_failures_total",
      help: "Flushes of sync status that failed (the status bucket could not be opened, or NATS refused a write); they are tried again, and while this grows GET /v1/envoys and services' status go stale.",
      registers,
      collect() {
        this.reset();
        this.inc(sources.statusPublishFailures());
      },
    });
    new Gauge({
      name: "envoyage_registry_services",
      help: "Services by state: served, or rejected as invalid or conflicting.",
      labelNames: ["state"],
      registers,
      collect() {
        for (const [state, count] of Object.entries(sources.services())) this.set({ state }, count);
      },
    });
    new Gauge({
      name: "envoyage_registry_ignored_keys",
      help: "Bucket keys the registry does not take: outside its layout, a name the API would refuse, or a claim naming no service (GET /status lists them).",
      registers,
      collect() {
        this.set(sources.ignoredKeys());
      },
    });
    new Gauge({
      name: "envoyage_ready",
      help: "1 once the registry is loaded and Envoys are served.",
      registers,
      collect() {
        this.set(sources.ready() ? 1 : 0);
      },
    });
    new Gauge({
      name: "envoyage_kv_revision",
      help: "Bucket revision this replica has applied.",
      registers,
      collect() {
        this.set(sources.revision());
      },
    });
    this.#pushes.counter({ name: "envoyage_xds_pushes_total", help: "Responses sent, by type.", labelNames: ["type", "protocol"], registers });
    this.#pushBytes.counter({ name: "envoyage_xds_push_bytes_total", help: "Bytes of responses sent, by type.", labelNames: ["type"], registers });
    this.#acks.counter({ name: "envoyage_xds_acks_total", help: "Responses Envoy accepted, by type.", labelNames: ["type"], registers });
    this.#nacks.counter({ name: "envoyage_xds_nacks_total", help: "Responses Envoy rejected, by type.", labelNames: ["type"], registers });
    this.#stale.counter({ name: "envoyage_xds_stale_requests_total", help: "Requests ignored for a stale nonce.", labelNames: ["type"], registers });
    this.#convergence = new Histogram({
      name: "envoyage_convergence_seconds",
      help: "From a KV write (server time) to an Envoy holding everything it changed, acknowledged.",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#watchLag = new Histogram({
      name: "envoyage_kv_watch_lag_seconds",
      help: "From a KV write (server time) to this replica receiving it, for changes after the initial load.",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#entries.counter({ name: "envoyage_kv_entries_total", help: "Bucket entries applied, by operation.", labelNames: ["kind"], registers });
    this.#commits = new Counter({ name: "envoyage_snapshot_commits_total", help: "Snapshot commits that changed what Envoys get.", registers });
    this.#commitDuration = new Histogram({
      name: "envoyage_snapshot_commit_duration_seconds",
      help: "Time to translate, encode and version one commit.",
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers,
    });
    this.#rejected = new Counter({
      name: "envoyage_registry_rejected_records_total",
      help: "Records rejected (never pushed), by reason.",
      labelNames: ["reason"],
      registers,
    });
    // Every series is reported at 0 from the start: an alert or a rate on it has a series to
    // read (a standby replica pushes nothing until an Envoy connects).
    for (const [typeUrl, name] of Object.entries(TYPE_NAMES)) {
      for (const counts of [this.#acks, this.#nacks, this.#stale, this.#pushBytes]) counts.add(typeUrl, () => ({ type: name }), 0);
      for (const protocol of PROTOCOL_NAMES) this.#pushes.add(protocol + typeUrl, () => ({ type: name, protocol }), 0);
    }
    for (const reason of REJECTION_REASONS) this.#rejected.inc({ reason }, 0);
  }

  adsEvents(): AdsEvents {
    return {
      connect: (stream) => void this.#syncedAt.set(stream, 0),
      disconnect: () => {},
      error: () => {},
      push: (stream, typeUrl, body) => {
        this.#pushes.add(stream.protocol + typeUrl, () => ({ type: typeName(typeUrl), protocol: stream.protocol }));
        this.#pushBytes.add(typeUrl, () => ({ type: typeName(typeUrl) }), body.bytes.length);
      },
      ack: (_stream, typeUrl) => this.#acks.add(typeUrl, () => ({ type: typeName(typeUrl) })),
      nack: (_stream, typeUrl) => this.#nacks.add(typeUrl, () => ({ type: typeName(typeUrl) })),
      stale: (_stream, typeUrl) => this.#stale.add(typeUrl, () => ({ type: typeName(typeUrl) })),
      synced: (stream, serial) => this.#observeConvergence(stream, serial),
    };
  }

  replicaEvents(): ReplicaEvents {
    return {
      entry: (entry, live) => {
        const kind = entry.value === undefined ? "delete" : "put";
        this.#entries.add(kind, () => ({ kind }));
        // An entry of the initial load is as old as the record, not late.
        if (live) this.#watchLag.observe(Math.max(0, Date.now() - entry.created.getTime()) / 1000);
      },
      commit: (stats) => {
        this.#commits.inc();
        this.#commitDuration.observe(stats.durationMs / 1000);
      },
      rejected: (_name, reason) => this.#rejected.inc({ reason }),
    };
  }

  /** One observation per catch-up: from the earliest write the Envoy did not hold yet. */
  #observeConvergence(stream: AdsStream, serial: number): void {
    const previous = this.#syncedAt.get(stream) ?? 0;
    this.#syncedAt.set(stream, serial);
    if (previous === 0) return; // a new Envoy's first full config is not a change converging
    let earliest = Infinity;
    // Commits older than the store remembers have no time to give.
    for (let s = Math.max(previous + 1, serial - COMMIT_HISTORY + 1); s <= serial; s++) earliest = Math.min(earliest, this.#store.commitMeta(s)?.firstWriteAt ?? Infinity);
    if (earliest !== Infinity) this.#convergence.observe(Math.max(0, Date.now() - earliest) / 1000);
  }
}
