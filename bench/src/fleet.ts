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
   * `services` services, or after `timeoutMs` with the count of streams that had not: a peer
   * too slow to sync is a figure, not a crash of the whole benchmark.
   */
  static async start(options: { port: number; streams: number; protocol: "sotw" | "delta"; services: number; timeoutMs?: number }): Promise<Fleet> {
    const child = fork(new URL("./fleet-main.js", import.meta.url), [
      "--port", String(options.port),
      "--streams", String(options.streams),
      "--protocol", options.protocol,
      "--services", String(options.services),
    ], { execArgv: ["--max-old-space-size=8192"] });
    // Generous: go-control-plane's SnapshotCache takes minutes to sync 1,000 streams of 10,000 services here.
    const timeoutMs = options.timeoutMs ?? 600_000;
    const { at, synced } = await new Promise<{ at: number; synced: number }>((resolve, reject) => {
      const onMessage = (m: { ready?: boolean; at?: number; synced?: number; diagnosis?: string }) => {
        if (m.ready) resolve({ at: m.at!, synced: options.streams });
        else if (m.diagnosis !== undefined) resolve({ at: m.at!, synced: m.synced! });
        else return;
        clearTimeout(timer);
        child.off("message", onMessage);
      };
      const timer = setTimeout(() => child.send({ diagnose: true }), timeoutMs);
      child.on("message", onMessage);
      child.once("exit", (code) => reject(new Error(`the fleet exited (${code}) before it was ready`)));
    });
    return new Fleet(child, at, options.streams - synced);
  }

  /**
   * Resolves when every stream holds `port` for `cluster`, or after `timeoutMs` with the streams
   * still missing it: a slow peer is a figure, not a crash of the whole benchmark.
   */
  watch(cluster: string, port: number, timeoutMs = 120_000): Promise<Seen> {
    return new Promise((resolve) => {
      const onMessage = (m: { seen?: { all: number; first: number; from: number }; at?: number } & Partial<Seen>) => {
        if (m.seen) resolve({ first: m.seen.first, all: m.seen.all, bytes: m.bytes! - m.seen.from, missing: 0 });
        else if (m.diagnosis) resolve({ first: m.first || m.at!, all: m.at!, bytes: m.bytes!, missing: m.missing!, diagnosis: m.diagnosis });
        else return;
        clearTimeout(timer);
        this.#child.off("message", onMessage);
      };
      const timer = setTimeout(() => this.#child.send({ diagnose: true }), timeoutMs);
      this.#child.on("message", onMessage);
      this.#child.send({ watch: { cluster, port } });
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.#child.once("exit", resolve));
    this.#child.kill("SIGKILL");
    await exited;
  }
}
