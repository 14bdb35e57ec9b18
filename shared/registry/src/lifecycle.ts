// Process lifecycle shared by both services: configuration errors end the process with a
// one-line message (exit 2), unexpected errors are logged and end it (exit 1, so a supervisor
// restarts a clean process), and SIGTERM/SIGINT run one graceful shutdown.
import type { Logger } from "pino";
import { ConfigError } from "./config.js";

export function loadConfigOrExit<T>(program: string, load: () => T): T {
  try {
    return load();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`${program}: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
}

export function exitOnUnexpectedErrors(logger: Logger): void {
  process.on("uncaughtException", (error) => {
    logger.fatal({ err: error }, "uncaught exception");
    process.exit(1);
  });
  process.on("unhandledRejection", (error) => {
    logger.fatal({ err: error }, "unhandled rejection");
    process.exit(1);
  });
}

/**
 * Runs `shutdown` once on the first SIGTERM or SIGINT, then exits 0. A shutdown still running
 * after `deadlineMs` (waiting on a NATS that never answers, say) is logged and the process
 * exits 1: a supervisor's stop must not hang until it escalates to SIGKILL.
 */
export function onTermination(logger: Logger, deadlineMs: number, shutdown: (signal: NodeJS.Signals) => Promise<void>): void {
  let stopping = false;
  const handle = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      logger.warn({ deadlineMs }, "shutdown did not finish in time; exiting");
      process.exit(1);
    }, deadlineMs).unref();
    void shutdown(signal).then(() => process.exit(0));
  };
  process.on("SIGTERM", handle);
  process.on("SIGINT", handle);
}
