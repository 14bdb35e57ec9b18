// The parent side of the fleet (fleet-main.ts): starts it, asks it to watch for a change, stops it.
import { fork, type ChildProcess } from "node:child_process";

export interface Seen {
  /** Absolute times (performance.timeOrigin + now, comparable across processes on this machine). */
  first: number;
  all: number;
  /** Response bytes all streams received for the change. */
  bytes: number;
}

export class Fleet {
  readonly #child: ChildProcess;
  readonly readyAt: number;

  private constructor(child: ChildProcess, readyAt: number) {
    this.#child = child;
    this.readyAt = readyAt;
  }

  /** Opens `streams` streams to 127.0.0.1:`port`; resolves once each holds the configuration of `services` services. */
  static async start(options: { port: number; streams: number; protocol: "sotw" | "delta"; services: number; timeoutMs?: number }): Promise<Fleet> {
    const child = fork(new URL("./fleet-main.js", import.meta.url), [
      "--port", String(options.port),
      "--streams", String(options.streams),
      "--protocol", options.protocol,
      "--services", String(options.services),
    ], { execArgv: ["--max-old-space-size=8192"] });
    const readyAt = await new Promise<number>((resolve, reject) => {
      // Generous: go-control-plane's SnapshotCache takes minutes to sync 1,000 streams of 10,000 services here.
      const timeoutMs = options.timeoutMs ?? 900_000;
      const timer = setTimeout(() => reject(new Error(`the fleet of ${options.streams} streams was not ready within ${timeoutMs / 1000} s`)), timeoutMs);
      child.on("message", (m: { ready?: boolean; at?: number; error?: string }) => {
        if (m.ready) {
          clearTimeout(timer);
          resolve(m.at!);
        }
      });
      child.once("exit", (code) => reject(new Error(`the fleet exited (${code}) before it was ready`)));
    });
    return new Fleet(child, readyAt);
  }

  /** Resolves when every stream holds `port` for `cluster`. */
  watch(cluster: string, port: number, timeoutMs = 120_000): Promise<Seen> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#child.once("message", (m: { diagnosis?: string }) => reject(new Error(`the change did not reach every stream within ${timeoutMs} ms: ${m.diagnosis}`)));
        this.#child.send({ diagnose: true });
      }, timeoutMs);
      const onMessage = (m: { seen?: { all: number; first: number; from: number }; bytes?: number }) => {
        if (!m.seen) return;
        clearTimeout(timer);
        this.#child.off("message", onMessage);
        resolve({ first: m.seen.first, all: m.seen.all, bytes: m.bytes! - m.seen.from });
      };
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
