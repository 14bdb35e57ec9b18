// A child process started in its own process group, so that stopping it stops everything it
// spawned (wrappers such as pyenv shims fork the real program). Every process still running
// when the test process exits is killed.
import { spawn, type ChildProcess } from "node:child_process";

const MAX_OUTPUT = 256 * 1024;
const running = new Set<ManagedProcess>();

process.on("exit", () => {
  for (const child of running) child.signalGroup("SIGKILL");
});

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string | undefined>;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What tests do to a running component, whether it is a local process or a container. */
export interface Lifecycle {
  readonly running: boolean;
  /** What it wrote to stdout and stderr (the last 256 KiB). */
  output(): string;
  /** Sends `signal` (SIGTERM by default) and waits for the exit; SIGKILL after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  kill(): Promise<Exit>;
  /** Freezes it until resume(): alive, holding its sockets, answering nothing. */
  pause(): void | Promise<void>;
  resume(): void | Promise<void>;
}

export class ManagedProcess implements Lifecycle {
  readonly name: string;
  readonly exited: Promise<Exit>;
  readonly #child: ChildProcess;
  #output = "";
  #running = true;

  private constructor(options: StartOptions) {
    this.name = options.name;
    this.#child = spawn(options.command, options.args, {
      env: { ...process.env, ...options.env },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const collect = (chunk: Buffer) => {
      this.#output += chunk.toString("utf8");
      if (this.#output.length > MAX_OUTPUT) this.#output = this.#output.slice(-MAX_OUTPUT);
    };
    this.#child.stdout!.on("data", collect);
    this.#child.stderr!.on("data", collect);
    running.add(this);
    this.exited = new Promise((resolve) => {
      this.#child.once("error", (error) => {
        this.#output += `\n[failed to start ${options.command}: ${error.message}]`;
      });
      this.#child.once("close", (code, signal) => {
        this.#running = false;
        running.delete(this);
        resolve({ code, signal });
      });
    });
  }

  static start(options: StartOptions): ManagedProcess {
    return new ManagedProcess(options);
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get running(): boolean {
    return this.#running;
  }

  /** The last 256 KiB the process wrote to stdout and stderr. */
  output(): string {
    return this.#output;
  }

  signalGroup(signal: NodeJS.Signals): void {
    if (!this.#running || this.#child.pid === undefined) return;
    try {
      process.kill(-this.#child.pid, signal);
    } catch {
      // already gone
    }
  }

  /** Sends `signal` (SIGTERM by default) and waits; SIGKILL after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<Exit> {
    this.signalGroup(signal);
    const timer = setTimeout(() => this.signalGroup("SIGKILL"), timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  kill(): Promise<Exit> {
    return this.stop("SIGKILL");
  }

  /** Freezes the process (SIGSTOP) until resume(): alive, holding its sockets, answering nothing. */
  pause(): void {
    this.signalGroup("SIGSTOP");
  }

  resume(): void {
    this.signalGroup("SIGCONT");
  }
}
