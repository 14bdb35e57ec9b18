// 5. API: sustained PUT/s and latency with autocannon, against a real nats-server with and
// without sync_interval: always (every acknowledged write on disk before the ack, as
// deploy/nats.conf runs it). PUTs replace 1,000 existing services, the steady state of an
// operator's automation; creating services is the burst benchmark's business.
import autocannon from "autocannon";
import { startApi, startNats } from "@envoyage/test-support";
import { httpRequest } from "./http.js";
import type { Section } from "./report.js";

const SERVICES = 1000;

interface ApiRun {
  durable: boolean;
  connections: number;
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
    return runs;
  } finally {
    await api.stop();
    await nats.stop();
  }
}

export async function api(quick: boolean): Promise<Section> {
  const seconds = quick ? 5 : 15;
  const connections = [8, 64];
  const runs: ApiRun[] = [];
  for (const durable of [true, false]) {
    console.log(`[bench] api: PUT for ${seconds} s per run, NATS ${durable ? "with" : "without"} sync_interval: always`);
    runs.push(...(await measure(durable, connections, seconds)));
  }
  const durableRuns = runs.filter((r) => r.durable);
  const best = durableRuns.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  const failed = runs.reduce((n, r) => n + r.failed, 0);
  return {
    title: "5. API: sustained PUT/s",
    description:
      `autocannon PUTs replacing ${SERVICES} existing services (each with a new endpoint port), for ${seconds} s per row, against the API ` +
      "on one nats-server; latency is autocannon's, from request sent to answer. A replacement whose domains the API's registry view " +
      "already credits to the service is one compare-and-set write to the bucket; NATS acknowledges it after the write is stored, and " +
      "with sync_interval: always after it is on disk (fsync).",
    table: {
      header: ["NATS", "connections", "PUT/s", "p50 ms", "p99 ms", "max ms", "failed"],
      rows: runs.map((r) => [
        r.durable ? "sync_interval: always" : "default sync",
        r.connections,
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
      { target: "no failed PUT", measured: String(failed), met: failed === 0 },
    ],
  };
}
