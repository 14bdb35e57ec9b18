// A replica's Prometheus metrics as scraped: event counters by label, counted once per event
// however often they are scraped; watch lag only for changes after the initial load.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TYPES } from "@envoyage/test-support";
import type { AdsStream } from "../src/ads/stream.js";
import { XdsMetrics } from "../src/metrics.js";
import { SnapshotStore } from "../src/snapshot.js";

const sources = {
  streamCounts: () => ({ sotw: 0, delta: 0 }),
  writes: () => ({ inFlightBytes: 0, queued: 0, stalled: 0 }),
  services: () => ({ served: 0, invalid: 0, conflict: 0 }),
  ignoredKeys: () => 0,
  ready: () => true,
  revision: () => 0,
  statusPublishFailures: () => 0,
};
const sotw = { protocol: "sotw" } as AdsStream;
const delta = { protocol: "delta" } as AdsStream;
const body = (bytes: number) => ({ bytes: Buffer.alloc(bytes), nonce: "n", version: "v", count: 1, removed: 0 });

describe("XdsMetrics", () => {
  it("counts pushes, bytes, ACKs and NACKs by type (and protocol), the same at every scrape", async () => {
    const metrics = new XdsMetrics(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }), sources);
    const events = metrics.adsEvents();
    events.push(sotw, TYPES.cluster, body(10));
    events.push(sotw, TYPES.cluster, body(5));
    events.push(delta, TYPES.cluster, body(1));
    events.push(delta, TYPES.endpoint, body(7));
    events.ack(sotw, TYPES.cluster, "v", "n");
    events.nack(delta, TYPES.endpoint, "v", "n", "bad");
    for (let scrape = 0; scrape < 2; scrape++) {
      const text = await metrics.registry.metrics();
      assert.match(text, /envoyage_xds_pushes_total\{type="CDS",protocol="sotw"\} 2\n/);
      assert.match(text, /envoyage_xds_pushes_total\{type="CDS",protocol="delta"\} 1\n/);
      assert.match(text, /envoyage_xds_pushes_total\{type="EDS",protocol="delta"\} 1\n/);
      assert.match(text, /envoyage_xds_push_bytes_total\{type="CDS"\} 16\n/);
      assert.match(text, /envoyage_xds_acks_total\{type="CDS"\} 1\n/);
      assert.match(text, /envoyage_xds_nacks_total\{type="EDS"\} 1\n/);
      assert.match(text, /envoyage_xds_acks_total\{type="EDS"\} 0\n/);
    }
  });

  it("reports the services by state, the ignored keys and the failed status writes its sources count", async () => {
    const counted = { ...sources, services: () => ({ served: 4, invalid: 1, conflict: 2 }), ignoredKeys: () => 3, statusPublishFailures: () => 5 };
    const text = await new XdsMetrics(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }), counted).registry.metrics();
    assert.match(text, /envoyage_registry_services\{state="served"\} 4\n/);
    assert.match(text, /envoyage_registry_services\{state="conflict"\} 2\n/);
    assert.match(text, /envoyage_registry_ignored_keys 3\n/);
    assert.match(text, /envoyage_xds_status_publish_failures_total 5\n/);
  });

  it("reports pushes, NACKs, stale requests and rejected records at 0 before the first one, so alerts and rates have a series", async () => {
    const text = await new XdsMetrics(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }), sources).registry.metrics();
    for (const type of ["CDS", "EDS", "LDS", "RDS"]) {
      assert.match(text, new RegExp(`envoyage_xds_nacks_total\\{type="${type}"\\} 0\n`));
      assert.match(text, new RegExp(`envoyage_xds_stale_requests_total\\{type="${type}"\\} 0\n`));
      assert.match(text, new RegExp(`envoyage_xds_push_bytes_total\\{type="${type}"\\} 0\n`));
      for (const protocol of ["sotw", "delta"]) assert.match(text, new RegExp(`envoyage_xds_pushes_total\\{type="${type}",protocol="${protocol}"\\} 0\n`));
    }
    for (const reason of ["invalid", "conflict", "validation"]) {
      assert.match(text, new RegExp(`envoyage_registry_rejected_records_total\\{reason="${reason}"\\} 0\n`));
    }
  });

  it("counts bucket entries by kind, and times watch lag only for changes after the initial load", async () => {
    const metrics = new XdsMetrics(new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort: 10000 }), sources);
    const events = metrics.replicaEvents();
    const yearOld = new Date(Date.now() - 365 * 24 * 3600_000);
    events.entry({ key: "services.a", revision: 1, value: new Uint8Array(1), created: yearOld }, false);
    events.entry({ key: "services.b", revision: 2, value: undefined, created: yearOld }, false);
    events.entry({ key: "services.a", revision: 3, value: new Uint8Array(1), created: new Date() }, true);
    for (let scrape = 0; scrape < 2; scrape++) {
      const text = await metrics.registry.metrics();
      assert.match(text, /envoyage_kv_entries_total\{kind="put"\} 2\n/);
      assert.match(text, /envoyage_kv_entries_total\{kind="delete"\} 1\n/);
      assert.match(text, /envoyage_kv_watch_lag_seconds_count 1\n/);
      assert.match(text, /envoyage_kv_watch_lag_seconds_bucket\{le="1"\} 1\n/, "the year-old entries of the load were timed");
    }
  });
});
