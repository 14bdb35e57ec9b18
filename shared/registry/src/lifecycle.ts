// Process lifecycle shared by both services: configuration errors end the process with a
// one-line message (exit 2), unexpected errors are logged and end it (exit 1, so a supervisor
// restarts a clean process), and SIGTERM/SIGINT run one graceful shutdown.
import type { Logger } from "pino";
import { ConfigError } from "./config.js";
import type { NatsLink } from "./nats.js";

/** The oldest Node.js major the services run on (package.json "engines"). */
const MIN_NODE_MAJOR = 26;

/**
 * An older Node fails later on an API it lacks ("Promise.withResolvers is not a function" on
 * Node 20), far from the cause: say the cause at once, and exit as on a malformed setting.
 */
export function requireSupportedNode(program: string, version = process.versions.node): void {
  const major = Number(version.split(".")[0]);
  if (major >= MIN_NODE_MAJOR) return;
  console.error(`${program}: needs Node.js ${MIN_NODE_MAJOR} or later, this is ${version}; make install puts it in .tools/bin (README, "Two commands")`);
  process.exit(2);
}

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
 * Runs `shutdown` once on the first SIGTERM or SIGINT, then exits 0 (1 if it fails). A shutdown still running
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
    shutdown(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed; exiting");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", handle);
  process.on("SIGINT", handle);
}

/**
 * A NATS connection the client closed for good leaves the process serving what it had, never
 * to learn of a change again: better to exit (1) and be started again by the supervisor, as on
 * an unexpected error. (Envoys move to another replica; API clients retry.)
 */
export function exitWhenNatsIsLost(link: NatsLink, logger: Logger): void {
  link.onEvent((event) => {
    if (event !== "lost") return;
    logger.fatal("exiting: without NATS for good, this process would serve stale data");
    process.exit(1);
  });
}
