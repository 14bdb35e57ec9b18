// Rejected records as log lines. The replica says each rejection once, when a record's problem
// first shows or changes: at most LOGGED_PER_WINDOW of them every WINDOW_MS, then one line at the
// window's end counts the rest, so a script writing thousands of bad records (in one burst or one
// `nats kv put` at a time) does not flood the log. GET /status lists every one (services.rejected),
// and envoyage_registry_rejected_records_total counts them.
import { BUCKET_HISTORY } from "@envoyage/registry";
import type { Logger } from "pino";
import type { ServiceStatus } from "./registry.js";

export const LOGGED_PER_WINDOW = 20;
export const WINDOW_MS = 10_000;

export class RejectionLog {
  readonly #logger: Logger;
  readonly #now: () => number;
  #windowStart = -Infinity;
  #logged = 0;
  /** Rejections of this window past its budget, said in one line when it ends. */
  #unlogged = 0;
  #summary: NodeJS.Timeout | undefined;

  constructor(logger: Logger, now = () => performance.now()) {
    this.#logger = logger;
    this.#now = now;
  }

  rejected(name: string, status: Exclude<ServiceStatus, { state: "serving" }>): void {
    const now = this.#now();
    if (now - this.#windowStart >= WINDOW_MS) {
      this.#summarize();
      this.#windowStart = now;
      this.#logged = 0;
    }
    if (this.#logged >= LOGGED_PER_WINDOW) {
      this.#unlogged++;
      this.#summary ??= setTimeout(() => this.#summarize(), this.#windowStart + WINDOW_MS - now).unref();
      return;
    }
    this.#logged++;
    const servingRevision = status.servingRevision ?? null;
    // Said with its limit: a script rewriting a bad value in a loop pushes the last good one out of the history.
    const served =
      status.servingRevision === undefined
        ? "the service is not served"
        : `the last good revision keeps serving while it stays in the key's history (${BUCKET_HISTORY} revisions in Envoyage's bucket: fix the record before as many more writes to it)`;
    if (status.state === "invalid") {
      this.#logger.warn({ service: name, revision: status.revision, problem: status.problem, servingRevision }, `rejected an invalid record; ${served}`);
    } else {
      this.#logger.warn(
        { service: name, revision: status.revision, conflicts: status.conflicts, servingRevision },
        `rejected a record claiming domains another service holds; ${served}`,
      );
    }
  }

  /** Says what is left unsaid now: the replica stops. */
  stop(): void {
    this.#summarize();
  }

  #summarize(): void {
    clearTimeout(this.#summary);
    this.#summary = undefined;
    if (this.#unlogged === 0) return;
    this.#logger.warn(
      { more: this.#unlogged },
      `${this.#unlogged} more records were rejected in these ${WINDOW_MS / 1000} s, not logged one by one (the log takes ${LOGGED_PER_WINDOW} per ${WINDOW_MS / 1000} s): GET /status lists them all, with why, under services.rejected`,
    );
    this.#unlogged = 0;
  }
}
