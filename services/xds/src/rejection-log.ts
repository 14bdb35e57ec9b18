// Rejected records as log lines. The replica says each rejection once, when a record's problem
// first shows or changes; at most LOGGED_PER_WINDOW of them every WINDOW_MS, then one line per
// commit counts the rest, so a script writing thousands of bad records does not flood the log.
// GET /status lists every one (services.rejected), and envoyage_registry_rejected_records_total
// counts them.
import type { Logger } from "pino";
import type { ServiceStatus } from "./registry.js";

export const LOGGED_PER_WINDOW = 20;
export const WINDOW_MS = 10_000;

export class RejectionLog {
  readonly #logger: Logger;
  readonly #now: () => number;
  #windowStart = -Infinity;
  #logged = 0;
  /** Rejections of this commit past the window's budget. */
  #unlogged = 0;

  constructor(logger: Logger, now = () => performance.now()) {
    this.#logger = logger;
    this.#now = now;
  }

  rejected(name: string, status: Exclude<ServiceStatus, { state: "serving" }>): void {
    const now = this.#now();
    if (now - this.#windowStart >= WINDOW_MS) {
      this.#windowStart = now;
      this.#logged = 0;
    }
    if (this.#logged >= LOGGED_PER_WINDOW) {
      this.#unlogged++;
      return;
    }
    this.#logged++;
    const servingRevision = status.servingRevision ?? null;
    const served = status.servingRevision === undefined ? "the service is not served" : "the last good revision keeps serving";
    if (status.state === "invalid") {
      this.#logger.warn({ service: name, revision: status.revision, problem: status.problem, servingRevision }, `rejected an invalid record; ${served}`);
    } else {
      this.#logger.warn(
        { service: name, revision: status.revision, conflicts: status.conflicts, servingRevision },
        `rejected a record claiming domains another service holds; ${served}`,
      );
    }
  }

  /** The end of a commit: one line for its rejections not logged one by one. */
  commitDone(): void {
    if (this.#unlogged === 0) return;
    this.#logger.warn(
      { more: this.#unlogged },
      `as many more records were rejected, not logged one by one (${LOGGED_PER_WINDOW} every ${WINDOW_MS / 1000} s at most): GET /status lists them all, with why, under services.rejected`,
    );
    this.#unlogged = 0;
  }
}
