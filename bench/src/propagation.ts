// 1. Propagation through a real Envoy: a change written → the first request through Envoy that
// sees it. Three ways in, each measured from just before the write:
//   floor — Envoyage's ADS server fed directly (no NATS): what a bare push costs here
//   KV put — a write to NATS, as `nats kv put` does (without starting the CLI process)
//   API PUT — an HTTP PUT to the API
// in both xDS modes. Changes alternate the upstream of web.example.com between A and B.
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { encodeRecord } from "@envoyage/registry";
import { freePort, record, startNats, startStackServingWeb, startUpstream, upstreamGreeting, type Upstream } from "@envoyage/test-support";
import { startFloor, startPeerFloor, type Floor } from "./floor.js";
import { httpRequest, seen } from "./http.js";
import type { Section } from "./report.js";
import { distribution, ms, type Distribution } from "./stats.js";

const WEB = "web.example.com";
/**
 * Quiet time before each change. Longer than the replicas' batching window (COMMIT_BATCH_MS,
 * 50 ms): each sample is then one change, as an operator makes them. Changes back to back,
 * 2–3 ms apart, would be a burst, which replicas batch by design (section 2 measures bursts).
 */
const PACE_MS = 60;
const PROTOCOLS = ["sotw", "delta"] as const;

type StartFloor = typeof startFloor;

/**
 * From just before `write` to the first request through Envoy that answers from upstream `to`.
 * Probing starts in the next turn of the event loop, once the write has been handed to the
 * socket: a probe sent first would hold the write back by the cost of sending a request (the
 * HTTP client writes on the next tick, the NATS client at the end of the microtask checkpoint),
 * and it could not see a change that has not left yet.
 */
async function timeChange(listenerPort: number, to: "A" | "B", write: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  // A write that fails stops the probing too, rather than leaving it to run out its time.
  const failed = new AbortController();
  const written = write().catch((error: unknown) => {
    failed.abort(error);
    throw error;
  });
  const sawIt = new Promise((resolve) => setImmediate(resolve)).then(() => seen(listenerPort, WEB, upstreamGreeting(to), undefined, failed.signal));
  const [seenAt] = await Promise.all([sawIt, written]);
  return seenAt - started;
}

async function floor(protocol: "sotw" | "delta", changes: number, start: StartFloor): Promise<number[]> {
  const listenerPort = await freePort();
  const upstreams: Record<"A" | "B", Upstream> = { A: await startUpstream("A"), B: await startUpstream("B") };
  let bare: Floor | undefined;
  try {
    bare = await start(protocol, listenerPort);
    await bare.push({ web: record(upstreams.A) });
    await seen(listenerPort, WEB, upstreamGreeting("A"), 30_000);
    const samples: number[] = [];
    for (let i = 0; i < changes; i++) {
      const to = i % 2 === 0 ? "B" : "A";
      await sleep(PACE_MS);
      samples.push(await timeChange(listenerPort, to, () => bare!.push({ web: record(upstreams[to]) })));
    }
    return samples;
  } finally {
    await bare?.stop();
    await upstreams.A.close();
    await upstreams.B.close();
  }
}

interface StackSamples {
  kv: number[];
  api: number[];
  /** Round trips to the API's /healthz: paced like the changes, and back to back. */
  hop: { paced: number[]; busy: number[] };
}

/** Acknowledgements of KV puts paced like the changes: durable (the stack's nats-server) and with default sync. */
interface WriteSamples {
  durable: number[];
  defaultSync: number[];
}

/** What a paced KV put costs until NATS acknowledges it, on `natsUrl`, to a bucket nobody watches. */
async function ackCost(natsUrl: string, samples: number): Promise<number[]> {
  const nc = await connect({ servers: natsUrl });
  try {
    const kv = await new Kvm(nc).create("bench-ack", { history: 1 });
    const acks: number[] = [];
    for (let i = 0; i < samples; i++) {
      await sleep(PACE_MS);
      const started = performance.now();
      await kv.put("key", String(i));
      acks.push(performance.now() - started);
    }
    return acks;
  } finally {
    await nc.close();
  }
}

/** The durable write's share of a change's way: paced acks with sync_interval: always, then with NATS's default sync. */
async function writeCost(samples: number): Promise<WriteSamples> {
  const results: WriteSamples = { durable: [], defaultSync: [] };
  for (const durable of [true, false]) {
    const nats = await startNats({ durable });
    try {
      results[durable ? "durable" : "defaultSync"] = await ackCost(nats.url, samples);
    } finally {
      await nats.stop();
    }
  }
  return results;
}

/** What one round trip to a local process costs, when it sat idle before and when it did not. */
async function hopCost(port: number, samples: number): Promise<StackSamples["hop"]> {
  const once = async () => {
    const started = performance.now();
    await httpRequest(port, { path: "/healthz" });
    return performance.now() - started;
  };
  const paced: number[] = [];
  const busy: number[] = [];
  for (let i = 0; i < samples; i++) {
    await sleep(PACE_MS);
    paced.push(await once());
  }
  for (let i = 0; i < samples; i++) busy.push(await once());
  return { paced, busy };
}

async function throughStack(protocol: "sotw" | "delta", changes: number): Promise<StackSamples> {
  const stack = await startStackServingWeb({ protocol });
  const nc = await connect({ servers: stack.natsUrl });
  try {
    const kv = await new Kvm(nc).open("envoyage");
    const kvSamples: number[] = [];
    for (let i = 0; i < changes; i++) {
      const to = i % 2 === 0 ? "B" : "A";
      await sleep(PACE_MS);
      kvSamples.push(await timeChange(stack.listenerPort, to, () => kv.put("services.web", encodeRecord(record(stack.upstreams[to])))));
    }
    const apiSamples: number[] = [];
    for (let i = 0; i < changes; i++) {
      const to = i % 2 === 0 ? "B" : "A";
      await sleep(PACE_MS);
      apiSamples.push(await timeChange(stack.listenerPort, to, async () => {
        const response = await httpRequest(stack.api.port, { method: "PUT", path: "/v1/services/web", body: JSON.stringify(record(stack.upstreams[to])) });
        if (response.status !== 200) throw new Error(`PUT answered ${response.status}: ${response.body}`);
      }));
    }
    return { kv: kvSamples, api: apiSamples, hop: await hopCost(stack.api.port, Math.min(changes, 100)) };
  } finally {
    await nc.close();
    await stack.stop();
  }
}

export async function propagation(quick: boolean): Promise<Section> {
  const changes = quick ? 50 : 200;
  const rows: (string | number)[][] = [];
  const results: { protocol: string; path: string; d: Distribution; floor: Distribution }[] = [];
  const hops: StackSamples["hop"] = { paced: [], busy: [] };
  for (const protocol of PROTOCOLS) {
    const floorDist = distribution(await floor(protocol, changes, startFloor));
    const peer = await floor(protocol, changes, startPeerFloor);
    const { kv, api, hop } = await throughStack(protocol, changes);
    hops.paced.push(...hop.paced);
    hops.busy.push(...hop.busy);
    const paths = [
      ["floor: ADS server fed directly", undefined],
      ["go-control-plane LinearCache fed directly", peer],
      ["KV put → Envoy", kv],
      ["API PUT → Envoy", api],
    ] as const;
    for (const [path, samples] of paths) {
      const d = samples ? distribution(samples) : floorDist;
      results.push({ protocol, path, d, floor: floorDist });
      rows.push([protocol, path, d.n, ms(d.p50), ms(d.p95), ms(d.p99), ms(d.max), (d.p50 / floorDist.p50).toFixed(2)]);
    }
  }
  const api = results.filter((r) => r.path.startsWith("API"));
  const worst = (key: "p50" | "p99") => Math.max(...api.map((r) => r.d[key]));
  const floorRatio = Math.max(...results.filter((r) => r.path.startsWith("KV") || r.path.startsWith("API")).map((r) => r.d.p50 / r.floor.p50));
  const peerRatios = PROTOCOLS.map((protocol) => {
    const [ours, peer] = ["floor", "go-control-plane"].map((prefix) => results.find((r) => r.protocol === protocol && r.path.startsWith(prefix))!.d.p50);
    return `${(ours! / peer!).toFixed(2)}×`;
  }).join(" / ");
  const hopPaced = distribution(hops.paced).p50;
  const hopBusy = distribution(hops.busy).p50;
  const writes = await writeCost(Math.min(changes, 100));
  const ackDurable = distribution(writes.durable).p50;
  const ackDefault = distribution(writes.defaultSync).p50;
  return {
    title: "1. Propagation through a real Envoy",
    description:
      `A change to web.example.com's upstream (A ↔ B), written ${changes} times per path, ${PACE_MS} ms apart (one change at a time; replicas batch bursts by design, see 2.); each sample runs from just before the write ` +
      "to the first request through Envoy that sees it (probes start as soon as the write has left, not after its answer). The floor is Envoyage's ADS server and snapshot store fed directly in a process " +
      "of their own (no NATS, no API): what a bare push to Envoy costs on this machine, measured in the same run. The go-control-plane row " +
      "is the same bare push from the Go peer (bench/peers, its LinearCache, which sends only what changed as Envoyage does), fed over its control endpoint. " +
      "\"KV put\" is what `nats kv put` does, from a NATS client (without starting the CLI process). Probes are HTTP requests " +
      "through Envoy back to back (each ~0.5 ms), so figures carry that granularity.",
    table: { header: ["mode", "path", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "p50 / floor p50"], rows },
    targets: [
      { target: "API PUT → Envoy p50 ≤ 20 ms (milestone)", measured: `${ms(worst("p50"))} ms`, met: worst("p50") <= 20 },
      { target: "API PUT → Envoy p99 ≤ 100 ms (milestone)", measured: `${ms(worst("p99"))} ms`, met: worst("p99") <= 100 },
      { target: "API PUT → Envoy p50 ≤ 6 ms (goal)", measured: `${ms(worst("p50"))} ms`, met: worst("p50") <= 6 },
      { target: "API PUT → Envoy p99 ≤ 20 ms (goal)", measured: `${ms(worst("p99"))} ms`, met: worst("p99") <= 20 },
      { target: "within 1.5× of the floor (p50)", measured: `${floorRatio.toFixed(2)}×`, met: floorRatio <= 1.5 },
    ],
    notes: [
      `The stack adds ${ms(Math.max(...results.filter((r) => r.path.startsWith("KV")).map((r) => r.d.p50 - r.floor.p50)))} ms at p50 to the floor: ` +
        "the durable write (nats-server syncs it to disk before acknowledging, see 5.), the watch's delivery to the replica, and " +
        "the replica's own work for a change (4. measures it paced like here). The API adds its HTTP round trip.",
      `Every hop wakes a process that sat idle: an HTTP round trip to the API's ` +
        `/healthz takes ${ms(hopPaced)} ms at p50 when made ${PACE_MS} ms apart, like the changes, against ${ms(hopBusy)} ms back to back ` +
        `(n = ${hops.paced.length} each, in this run). The floor wakes two processes (its ADS server, then Envoy); a KV put wakes ` +
        "nats-server, the replica and Envoy, and an API PUT the API first.",
      `The durable write's share: a KV put made ${PACE_MS} ms apart is acknowledged in ${ms(ackDurable)} ms at p50 by a nats-server with ` +
        `sync_interval: always, as the stack runs it, against ${ms(ackDefault)} ms with NATS's default sync (a fresh nats-server each, ` +
        `nothing else running, n = ${writes.durable.length} each, in this run). nats-server delivers a write to watchers once it has stored ` +
        "it, synced included, so the replicas wait for the sync as the writer does.",
      "Every process that follows the bucket wakes for the same change at the same moment: here two replicas and the API's views, on 2 cores " +
        "shared with nats-server, Envoy and the probes. Measured with packet captures (150–200 paced KV puts a run): with the API and the " +
        "standby replica stopped, the serving replica's hop from NATS message to push fell from ~2.4 to ~1.55 ms and the whole path by " +
        "1–2 ms. So a standby (no Envoy connected) commits 20 ms late (COMMIT_STANDBY_MS), which took ~0.5 ms off at p50 in A/B runs.",
      `Fed directly, Envoyage's ADS server takes ${peerRatios} the go-control-plane peer's time at p50 (${PROTOCOLS.join(" / ")}). ` +
        "Packet captures of both fed over HTTP (300 changes each, 2 rounds, 2026-11-28): the Envoy side, from push to Envoy's ACK, is " +
        "the same (0.5–0.6 ms); from the change arriving to the push leaving, the peer took 0.75–0.77 ms at p50 and Envoyage " +
        "1.72–1.74 ms with V8's default compile thresholds, 1.03–1.12 ms with the lowered ones the services run with once started " +
        "(README, shared/registry/src/tiering.ts): a change runs through code called once per change, which V8's defaults leave interpreted.",
      "Where a floor sample's time goes (a packet capture of the floor fed over HTTP, 100 paced changes each, 2026-11-28, p50): the " +
        "ADS server's hop (above), 0.55–0.62 ms from push to Envoy's ACK, 0.5–0.9 ms from the ACK to the first probe Envoy routes to the " +
        "new upstream (Envoy acknowledges before its worker thread has the new endpoints, and a probe already in flight finishes first), " +
        "then that probe's own way: 0.46–0.57 ms through Envoy to the upstream (a new connection) and 0.63–0.71 ms back.",
      "Since 2026-11-28 probing starts once the write has left; before, the first probe was sent first and held the write back. With " +
        "changes alternating between the two orders in one run, the floor's p50 went from 4.92 to 4.53 ms (sotw), 5.09 to 4.67 (delta) " +
        "and 4.86 to 4.47 (sotw again): earlier results are ~0.4 ms higher for that alone.",
      "The goal's 1.5× was set against a bare " +
        "push of ≈ 4 ms, i.e. 6 ms at p50 (the goal rows above); the ratio row compares with this run's own floor instead.",
    ],
  };
}
