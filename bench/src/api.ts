// 5. API: sustained PUT/s and latency with autocannon, against a real nats-server with and
// without sync_interval: always (every acknowledged write on disk before the ack, as
// deploy/nats.conf runs it). PUTs replace 1,000 existing services, the steady state of an
// operator's automation; creating services is the burst benchmark's business.
import autocannon from "autocannon";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { serviceKey } from "@envoyage/registry";
import { startApi, startNats, type NatsServer } from "@envoyage/test-support";
import { httpRequest } from "./http.js";
import type { Section } from "./report.js";
import { distribution } from "./stats.js";

const SERVICES = 1000;

/** Writes in flight when NATS is written to without the API, as many as the API's most connections. */
const NATS_IN_FLIGHT = 64;

interface ApiRun {
  durable: boolean;
  /** Undefined: NATS alone, a client writing the same records without the API. */
  connections: number | undefined;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
  failed: number;
}

async function measure(durable: boolean, connectionCounts: number[], seconds: number): Promise<ApiRun[]> {
  const nats = await startNats({ durable });
  const api = await startApi({ natsUrl: nats.url, env: { LOG_LEVEL: "warn" } });
  try {
    const body = (i: number, port: number) => JSON.stringify({ domains: [`api${i}.example.com`], endpoints: [{ address: "127.0.0.1", port }] });
    for (let i = 0; i < SERVICES; i++) {
      const response = await httpRequest(api.port, { method: "PUT", path: `/v1/services/api${i}`, body: body(i, 1000) });
      if (response.status !== 201) throw new Error(`creating api${i} answered ${response.status}: ${response.body}`);
    }
    const runs: ApiRun[] = [];
    for (const connections of connectionCounts) {
      let sent = 0;
      const result = await autocannon({
        url: api.url,
        connections,
        duration: seconds,
        requests: [
          {
            method: "PUT",
            setupRequest: (request) => {
              const i = sent++ % SERVICES;
              return { ...request, path: `/v1/services/api${i}`, headers: { "content-type": "application/json" }, body: body(i, 1001 + (sent % 60_000)) };
            },
          },
        ],
      });
      runs.push({
        durable,
        connections,
        perSecond: result.requests.average,
        p50: result.latency.p50,
        p99: result.latency.p99,
        max: result.latency.max,
        failed: result.non2xx + result.errors + result.timeouts,
      });
    }
    runs.push(await natsAlone(nats, durable, body, seconds));
    return runs;
  } finally {
    await api.stop();
    await nats.stop();
  }
}

/**
 * What nats-server itself acknowledges on this machine: the API's write (the record, replaced)
 * straight from a NATS client, NATS_IN_FLIGHT at a time, with the same durability. The API cannot
 * exceed it; the gap between the two rows is the API's own cost.
 */
async function natsAlone(nats: NatsServer, durable: boolean, body: (i: number, port: number) => string, seconds: number): Promise<ApiRun> {
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).open("envoyage");
    const latencies: number[] = [];
    let sent = 0;
    const until = performance.now() + seconds * 1000;
    const writer = async () => {
      while (performance.now() < until) {
        const i = sent++;
        const started = performance.now();
        await kv.put(serviceKey(`api${i % SERVICES}`), body(i % SERVICES, 1001 + (i % 60_000)));
        latencies.push(performance.now() - started);
      }
    };
    await Promise.all(Array.from({ length: NATS_IN_FLIGHT }, writer));
    const { n, p50, p99, max } = distribution(latencies);
    return { durable, connections: undefined, perSecond: n / seconds, p50: Math.round(p50), p99: Math.round(p99), max: Math.round(max), failed: 0 };
  } finally {
    await nc.close();
  }
}

export async function api(quick: boolean): Promise<Section> {
  const seconds = quick ? 5 : 15;
  const connections = [8, 32, 64];
  const runs: ApiRun[] = [];
  for (const durable of [true, false]) {
    console.log(`[bench] api: PUT for ${seconds} s per run, NATS ${durable ? "with" : "without"} sync_interval: always`);
    runs.push(...(await measure(durable, connections, seconds)));
  }
  const fastest = (durable: boolean) =>
    runs.filter((r) => r.durable === durable && r.connections !== undefined).reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  const best = fastest(true);
  const bestDefault = fastest(false);
  const ceiling = runs.find((r) => r.durable && r.connections === undefined)!;
  const failed = runs.reduce((n, r) => n + r.failed, 0);
  return {
    title: "5. API: sustained PUT/s",
    description:
      `autocannon PUTs replacing ${SERVICES} existing services (each with a new endpoint port), for ${seconds} s per row, against the API ` +
      "on one nats-server; latency is autocannon's, from request sent to answer. A replacement whose domains the API's registry view " +
      "already credits to the service is one compare-and-set write to the bucket; NATS acknowledges it after the write is stored, and " +
      "with sync_interval: always after it is on disk (fsync). \"NATS alone\" writes the same records from a NATS client, " +
      `${NATS_IN_FLIGHT} at a time, without the API: what nats-server acknowledges here, which the API cannot exceed.`,
    table: {
      header: ["NATS", "client", "PUT/s", "p50 ms", "p99 ms", "max ms", "failed"],
      rows: runs.map((r) => [
        r.durable ? "sync_interval: always" : "default sync",
        r.connections === undefined ? `NATS alone, ${NATS_IN_FLIGHT} writes in flight` : `API, ${r.connections} connections`,
        r.perSecond.toFixed(0),
        r.p50,
        r.p99,
        r.max,
        r.failed,
      ]),
    },
    targets: [
      { target: "≥ 5,000 PUT/s (durable NATS)", measured: `${best.perSecond.toFixed(0)} PUT/s`, met: best.perSecond >= 5000 },
      { target: "p99 ≤ 20 ms (durable NATS, at that rate)", measured: `${best.p99} ms`, met: best.p99 <= 20 },
      { target: "≥ 5,000 PUT/s (NATS's default sync)", measured: `${bestDefault.perSecond.toFixed(0)} PUT/s`, met: bestDefault.perSecond >= 5000 },
      { target: "p99 ≤ 20 ms (NATS's default sync, at that rate)", measured: `${bestDefault.p99} ms`, met: bestDefault.p99 <= 20 },
      { target: "no failed PUT", measured: String(failed), met: failed === 0 },
    ],
    notes: [
      `Durable, the API answers ${best.perSecond.toFixed(0)} PUT/s, ${((100 * best.perSecond) / ceiling.perSecond).toFixed(0)}% of the ` +
        `${ceiling.perSecond.toFixed(0)} writes/s nats-server acknowledges on its own here. With sync_interval: always (no acknowledged ` +
        "write lost), nats-server syncs each write of the bucket's stream to disk before acknowledging it, one after another, so the " +
        "disk's sync rate bounds every writer; the API, autocannon and nats-server also share this machine's 2 cores.",
      `With NATS's default sync (writes synced every 2 minutes: an acknowledged write can be lost if the machine, not only ` +
        `nats-server, goes down; docs/RELIABILITY.md), the same API answers ${bestDefault.perSecond.toFixed(0)} PUT/s: what bounds the ` +
        "durable figure is the disk, not the API. Envoyage runs NATS durable by default.",
    ],
  };
}
