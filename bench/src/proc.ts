// CPU time and memory of a process, from /proc (Linux).
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { ManagedProcess, type Lifecycle } from "@envoyage/test-support";

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** User + system CPU seconds the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Resident set size, in bytes. */
export function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** How long a server sits idle after a fleet synced before its memory is read. */
export const IDLE_MS = 10_000;

/**
 * Resident set size after IDLE_MS of quiet. A server that just synced a fleet still holds that
 * work's garbage for a few seconds (V8 and Go both give memory back after a while): Envoyage with
 * 5,000 streams measured 49 KiB a stream 2 s after the sync, 44 at 5 s and 43 from 10 s on. What
 * an idle stream costs is what stays.
 */
export async function idleRssBytes(pid: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  return rssBytes(pid);
}

/** The pid of a process the bench started; it fails for one it cannot see (a container). */
export function pidOf(process: Lifecycle): number {
  if (!(process instanceof ManagedProcess)) throw new Error("the benchmarks need local processes (not ENVOYAGE_TEST_STACK=containers)");
  return process.pid;
}

/** The next IPC message from a forked child; fails if it exits first, instead of waiting forever. */
export function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null, signal: string | null) => reject(new Error(`${child.spawnargs.join(" ")} exited (${signal ?? code}) before it answered`));
    child.once("exit", onExit);
    child.once("message", (message) => {
      child.off("exit", onExit);
      resolve(message as T);
    });
  });
}

/** CPU seconds per named process between the call and `elapsed()` (this process: "bench"). */
export function cpuMeter(pids: Record<string, number>): { elapsed(): Record<string, number> } {
  const read = () => ({
    ...Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)])),
    bench: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
  });
  const start = read();
  return {
    elapsed() {
      const now = read();
      return Object.fromEntries(Object.entries(now).map(([name, seconds]) => [name, seconds - start[name as keyof typeof start]!]));
    },
  };
}
