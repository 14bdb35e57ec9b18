// 2. Burst: 1,000 new services registered through the API as fast as it takes them → the time
// until a real Envoy routes every one of them. Writers keep a fixed number of PUTs in flight; a
// service is probed through Envoy once its PUT was answered (it cannot be routed before it is
// written), so probing costs the machine little while the writes run.
//
// Two floors run in the same run, so the figure can be read against this machine's speed:
//   Envoy alone — every service in one push from Envoyage's ADS server fed directly (floor.ts)
//   NATS alone — the burst's durable writes (a claim, then the record, per service) from a NATS client
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { BUCKET_HISTORY, claimKey, encodeRecord, serviceKey } from "@envoyage/registry";
import { freePort, record, startNats, startStack, startUpstream, upstreamGreeting, waitFor } from "@envoyage/test-support";
import { startFloor, type Floor } from "./floor.js";
import { httpRequest, isRouted } from "./http.js";
import { cpuMeter, pidOf } from "./proc.js";
import type { Section } from "./report.js";
import { ms } from "./stats.js";

const SERVICES = 1000;
const WRITERS = 32;
const PROBERS = 4;
/**
 * A prober whose service is not routed yet pauses this long: probing back to back would keep
 * Envoy and this process busy answering 404s, on the same 2 cores as the system measured.
 */
const MISS_PAUSE_MS = 5;
const NAMES = Array.from({ length: SERVICES }, (_, i) => `burst${i}`);
const domainOf = (name: string) => `${name}.example.com`;

interface BurstRun {
  run: string;
  protocol: "sotw" | "delta" | "—";
  /** First write sent → last write answered. */
  writeMs?: number;
  /** First write sent → every service routed by Envoy. */
  routedMs?: number;
  /** CPU seconds of each process during the run. */
  cpu: Record<string, number>;
}

/** Probes services through Envoy until each answers `expected`; services join as they become routable. */
class RouteProbe {
  readonly #queue: string[] = [];
  readonly #probing: Promise<void[]>;
  /** Probers with nothing to probe wait here (not spinning: they share the cores measured). */
  #wake: (() => void) | undefined;
  #work = new Promise<void>((resolve) => (this.#wake = resolve));
  #closed = false;
  routed = 0;
  /** When the last service was first seen routed (performance.now()). */
  routedAt = 0;

  constructor(listenerPort: number, expected: string, timeoutMs = 60_000) {
    const deadline = performance.now() + timeoutMs;
    let outstanding = 0;
    const prober = async () => {
      for (;;) {
        const name = this.#queue.shift();
        if (!name) {
          if (this.#closed && outstanding === 0) return;
          await this.#work;
          continue;
        }
        outstanding++;
        if (await isRouted(listenerPort, domainOf(name), expected)) {
          this.routed++;
          this.routedAt = performance.now();
        } else {
          await sleep(MISS_PAUSE_MS);
          this.add(name);
        }
        outstanding--;
        if (this.#closed && outstanding === 0 && this.#queue.length === 0) this.#signal();
        if (performance.now() > deadline) throw new Error(`Envoy routed ${this.routed} services after ${timeoutMs / 1000} s; ${this.#queue.length} never`);
      }
    };
    this.#probing = Promise.all(Array.from({ length: PROBERS }, prober));
    this.#probing.catch(() => undefined); // reported by finish()
  }

  add(...names: string[]): void {
    this.#queue.push(...names);
    this.#signal();
  }

  /** No more services join; resolves once every one is routed. */
  async finish(): Promise<void> {
    this.#closed = true;
    this.#signal();
    await this.#probing;
  }

  /** Wakes every waiting prober. */
  #signal(): void {
    const wake = this.#wake!;
    this.#work = new Promise<void>((resolve) => (this.#wake = resolve));
    wake();
  }
}

async function throughStack(protocol: "sotw" | "delta"): Promise<BurstRun> {
  const stack = await startStack({ protocol });
  try {
    const [first, second] = stack.replicas;
    const cpu = cpuMeter({
      nats: pidOf(stack.nats!.process),
      api: pidOf(stack.api.process),
      "xds-1": pidOf(first!.process),
      "xds-2": pidOf(second!.process),
      envoy: pidOf(stack.envoy.process),
    });
    const probe = new RouteProbe(stack.listenerPort, upstreamGreeting("A"));
    const started = performance.now();
    let next = 0;
    const writer = async () => {
      while (next < NAMES.length) {
        const name = NAMES[next++]!;
        const response = await httpRequest(stack.api.port, {
          method: "PUT",
          path: `/v1/services/${name}`,
          body: JSON.stringify(record(stack.upstreams.A, [domainOf(name)])),
        });
        if (response.status !== 201 && response.status !== 200) throw new Error(`PUT ${name} answered ${response.status}: ${response.body}`);
        probe.add(name);
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
    const writeMs = performance.now() - started;
    await probe.finish();
    if (probe.routed !== SERVICES) throw new Error(`Envoy routed ${probe.routed} of ${SERVICES} services`);
    return { run: "API → NATS → replicas → Envoy", protocol, writeMs, routedMs: probe.routedAt - started, cpu: cpu.elapsed() };
  } finally {
    await stack.stop();
  }
}

async function envoyAlone(protocol: "sotw" | "delta"): Promise<BurstRun> {
  const listenerPort = await freePort();
  const upstream = await startUpstream("A");
  let bare: Floor | undefined;
  try {
    bare = await startFloor(protocol, listenerPort);
    await bare.push({}); // the listener and an empty route configuration
    await waitFor("Envoy's listener", async () => ((await httpRequest(listenerPort, { host: "nothing.example.com" })).status === 404 ? true : undefined), {
      timeoutMs: 30_000,
    });
    const cpu = cpuMeter({ envoy: bare.envoyPid });
    const probe = new RouteProbe(listenerPort, upstreamGreeting("A"));
    const started = performance.now();
    await bare.push(Object.fromEntries(NAMES.map((name) => [name, record(upstream, [domainOf(name)])])));
    probe.add(...NAMES);
    await probe.finish();
    return { run: "floor: Envoy alone (all in one push)", protocol, routedMs: probe.routedAt - started, cpu: cpu.elapsed() };
  } finally {
    await bare?.stop();
    await upstream.close();
  }
}

async function natsAlone(): Promise<BurstRun> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).create("envoyage", { history: BUCKET_HISTORY });
    const cpu = cpuMeter({ nats: pidOf(nats.process) });
    const started = performance.now();
    let next = 0;
    const writer = async () => {
      while (next < NAMES.length) {
        const name = NAMES[next++]!;
        await kv.create(claimKey(domainOf(name)), name);
        await kv.create(serviceKey(name), encodeRecord({ domains: [domainOf(name)], endpoints: [{ address: "127.0.0.1", port: 5678 }] }));
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
    return { run: "floor: NATS alone (the same durable writes)", protocol: "—", writeMs: performance.now() - started, cpu: cpu.elapsed() };
  } finally {
    await nc.close();
    await nats.stop();
  }
}

const CPU_COLUMNS = ["nats", "api", "xds-1", "xds-2", "envoy", "bench"];
const orDash = (value: number | undefined, format: (v: number) => string) => (value === undefined ? "—" : format(value));

export async function burst(): Promise<Section> {
  const runs: BurstRun[] = [];
  console.log(`[bench] burst: NATS alone, ${SERVICES} claims and records`);
  runs.push(await natsAlone());
  for (const protocol of ["sotw", "delta"] as const) {
    console.log(`[bench] burst: Envoy alone, ${SERVICES} services in one push, ${protocol}`);
    runs.push(await envoyAlone(protocol));
    console.log(`[bench] burst: ${SERVICES} services through the API, ${protocol}`);
    runs.push(await throughStack(protocol));
  }
  const stackRuns = runs.filter((r) => !r.run.startsWith("floor"));
  const worst = Math.max(...stackRuns.map((r) => r.routedMs!));
  const envoyFloor = Math.max(...runs.filter((r) => r.run.startsWith("floor: Envoy")).map((r) => r.routedMs!));
  const natsFloor = runs.find((r) => r.run.startsWith("floor: NATS"))!.writeMs!;
  const busiest = Math.max(...stackRuns.map((r) => Object.values(r.cpu).reduce((a, b) => a + b, 0) / (r.routedMs! / 1000)));
  return {
    title: "2. Burst: 1,000 services through the API",
    description:
      `${SERVICES} new services, each with its own domain and one endpoint, PUT to the API by ${WRITERS} concurrent writers on a stack ` +
      "of real processes (nats-server with sync_interval: always, the API, two replicas, Envoy). Each service is probed through Envoy " +
      `from the moment its PUT is answered until Envoy routes it to the upstream (${PROBERS} probers; one whose service is not routed yet ` +
      `pauses ${MISS_PAUSE_MS} ms, so probing does not load the machine it measures). Each new service is two durable writes, one after ` +
      "the other: the claim of its domain (a compare-and-set create), then the record. The floors, in the same run: Envoyage's ADS " +
      "server fed directly pushes all 1,000 services to a fresh Envoy at once (what Envoy itself needs to create and route them), and " +
      `a NATS client makes the same ${2 * SERVICES} durable writes, ${WRITERS} services at a time, without the API.`,
    table: {
      header: ["run", "mode", "services", "writes answered ms", "all routed by Envoy ms", "last write → all routed ms", "services/s written", ...CPU_COLUMNS.map((c) => `${c} CPU s`)],
      rows: runs.map((r) => [
        r.run,
        r.protocol,
        SERVICES,
        orDash(r.writeMs, ms),
        orDash(r.routedMs, ms),
        r.writeMs !== undefined && r.routedMs !== undefined ? ms(r.routedMs - r.writeMs) : "—",
        orDash(r.writeMs, (w) => ((SERVICES / w) * 1000).toFixed(0)),
        ...CPU_COLUMNS.map((c) => orDash(r.cpu[c], (s) => s.toFixed(2))),
      ]),
    },
    targets: [
      { target: "all 1,000 routed ≤ 1 s after the first PUT", measured: `${ms(worst)} ms`, met: worst <= 1000 },
    ],
    notes: [
      `On this machine in this run, Envoy alone needed ${ms(envoyFloor)} ms to create and route 1,000 services pushed at once, and ` +
        `nats-server alone ${ms(natsFloor)} ms to store the ${2 * SERVICES} writes durably; the stack took ${(worst / envoyFloor).toFixed(2)}× ` +
        "the Envoy floor, with every process sharing the machine.",
      `The burst is bound by this machine's 2 cores: the CPU columns add up to ${busiest.toFixed(1)} cores busy at most, shared by ` +
        "nats-server, the API, two replicas, Envoy (creating 1,000 clusters) and this benchmark's own writers and probes (\"bench\"). " +
        "Replicas batch the burst (COMMIT_BATCH_MS), so Envoy applies a few dozen updates, not 1,000; a longer window (150 or 300 ms) " +
        "was measured to change neither Envoy's CPU nor the total: Envoy's cost is per cluster, not per update. Writing claim and " +
        "record in one NATS atomic batch was tried: it was slower here than two writes.",
      "Envoy's cost per cluster is mostly its stats. In A/B runs of the Envoy floor with other bootstraps (2–3 rounds each, 2026-11-27): " +
        "stats_matcher reject_all took its CPU from 0.92–1.39 s to 0.38–0.53 s, use_all_default_tags: false to 0.71–0.88 s, and " +
        "deferred_stat_options (deferred creation stats) changed nothing. envoy/bootstrap.yaml keeps Envoy's default stats and tags: " +
        "operators' dashboards and alerts depend on them.",
    ],
  };
}
