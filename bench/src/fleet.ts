// The parent side of the fleet (fleet-main.ts): starts it, asks it to watch for a change, stops it.
import { fork, type ChildProcess } from "node:child_process";

export interface Seen {
  /** Absolute times (performance.timeOrigin + now, comparable across processes on this machine). */
  first: number;
  /** When the last stream had it, or when the watch gave up (then `missing` > 0). */
  all: number;
  /** Response bytes all streams received for the change. */
  bytes: number;
  /** Streams still without the change when the watch gave up; 0 when every stream has it. */
  missing: number;
  /** What some of the missing streams hold, when `missing` > 0. */
  diagnosis?: string;
}

/** What the fleet process (fleet-main.ts) sends. */
interface FleetMessage {
  /** Every stream synced, at `at`. */
  ready?: boolean;
  /** Every stream holds the watched change. */
  seen?: { all: number; first: number; from: number };
  /** The answer to a diagnose request: how far the fleet got, at `at`. */
  diagnosis?: string;
  synced?: number;
  missing?: number;
  first?: number;
  at?: number;
  bytes?: number;
}

/**
 * Resolves with the first answer `answer` finds among the fleet's messages. After `timeoutMs`
 * the fleet is asked how far it got, and `answer` is given that diagnosis: a peer too slow to
 * finish is a figure, not a crash of the whole benchmark.
 */
function answerOf<T>(child: ChildProcess, timeoutMs: number, answer: (message: FleetMessage) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: FleetMessage) => {
      const value = answer(message);
      if (value === undefined) return;
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      resolve(value);
    };
    const onExit = (code: number | null) => reject(new Error(`the fleet exited (${code}) before it answered`));
    const timer = setTimeout(() => child.send({ diagnose: true }), timeoutMs);
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

export class Fleet {
  readonly #child: ChildProcess;
  /** When every stream had synced, or when start gave up waiting (then `unsynced` > 0). */
  readonly readyAt: number;
  /** Streams that had not synced when start gave up; 0 when all did. */
  readonly unsynced: number;

  private constructor(child: ChildProcess, readyAt: number, unsynced: number) {
    this.#child = child;
    this.readyAt = readyAt;
    this.unsynced = unsynced;
  }

  /**
   * Opens `streams` streams to 127.0.0.1:`port`; resolves once each holds the configuration of
   * `services` services, or after `timeoutMs` with the count of streams that had not.
   */
  static async start(options: { port: number; streams: number; protocol: "sotw" | "delta"; services: number; timeoutMs?: number }): Promise<Fleet> {
    const child = fork(new URL("./fleet-main.js", import.meta.url), [
      "--port", String(options.port),
      "--streams", String(options.streams),
      "--protocol", options.protocol,
      "--services", String(options.services),
    ], { execArgv: ["--max-old-space-size=8192"] });
    // Generous: go-control-plane's SnapshotCache takes minutes to sync 1,000 streams of 10,000 services here.
    const { at, synced } = await answerOf(child, options.timeoutMs ?? 600_000, (m) => {
      if (m.ready) return { at: m.at!, synced: options.streams };
      return m.diagnosis === undefined ? undefined : { at: m.at!, synced: m.synced! };
    });
    return new Fleet(child, at, options.streams - synced);
  }

  /** Resolves when every stream holds `port` for `cluster`, or after `timeoutMs` with the streams still missing it. */
  watch(cluster: string, port: number, timeoutMs = 120_000): Promise<Seen> {
    const seen = answerOf<Seen>(this.#child, timeoutMs, (m) => {
      if (m.seen) return { first: m.seen.first, all: m.seen.all, bytes: m.bytes! - m.seen.from, missing: 0 };
      return m.diagnosis === undefined ? undefined : { first: m.first || m.at!, all: m.at!, bytes: m.bytes!, missing: m.missing!, diagnosis: m.diagnosis };
    });
    this.#child.send({ watch: { cluster, port } });
    return seen;
  }

  /** The fleet process's pid, to meter its CPU. */
  get pid(): number {
    return this.#child.pid!;
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.#child.once("exit", resolve));
    this.#child.kill("SIGKILL");
    await exited;
  }
}
