// API_TOKENS_FILE: clients of /v1 present one of its tokens as `Authorization: Bearer <token>`.
// The probes, /metrics and /openapi.json stay open: load balancers and Prometheus call them.
// The file is read again when it changes (a rotation: add the new token, move clients, remove
// the old one), with no restart.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync, unwatchFile, watchFile, type Stats } from "node:fs";
import { ConfigError } from "@envoyage/registry";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ApiError } from "./errors.js";

/** Shorter tokens are refused: guessable, or a file that holds something else. */
const MIN_TOKEN_LENGTH = 16;
/** How often the file is looked at for a change (one stat). */
const POLL_MS = 2000;

/** The tokens of the file: one per line; blank lines and lines starting with # are skipped. */
export function readTokens(file: string): string[] {
  const tokens = readFileSync(file, "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  if (tokens.length === 0) throw new ConfigError(`API_TOKENS_FILE (${file}) holds no token: one per line`);
  const short = tokens.findIndex((token) => token.length < MIN_TOKEN_LENGTH);
  if (short >= 0) throw new ConfigError(`API_TOKENS_FILE (${file}): token ${short + 1} is shorter than ${MIN_TOKEN_LENGTH} characters`);
  if (tokens.some((token) => /\s/.test(token))) throw new ConfigError(`API_TOKENS_FILE (${file}): a token holds a space; one token per line`);
  return tokens;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/** The tokens the API takes, from the file, followed as it changes. */
export class BearerTokens {
  readonly #file: string;
  readonly #logger: Logger;
  #digests: Buffer[];
  readonly #onChange = (current: Stats, previous: Stats) => this.#changed(current, previous);

  constructor(file: string, tokens: readonly string[], logger: Logger) {
    this.#file = file;
    this.#logger = logger;
    this.#digests = tokens.map(digest);
    // Polled, not inotify: a mounted secret is replaced by a symlink swap that an inotify watch
    // on the old file never sees. Not persistent: it keeps no process alive.
    watchFile(file, { interval: POLL_MS, persistent: false }, this.#onChange);
  }

  /**
   * Whether the token is one of the file's. Digests are compared in constant time, every one of
   * them: the answer's timing says neither how much of a token matched nor which one.
   */
  takes(token: string): boolean {
    const presented = digest(token);
    let valid = false;
    for (const known of this.#digests) valid = timingSafeEqual(known, presented) || valid;
    return valid;
  }

  close(): void {
    unwatchFile(this.#file, this.#onChange);
  }

  #changed(current: Stats, previous: Stats): void {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size && current.ino === previous.ino) return;
    try {
      const tokens = readTokens(this.#file);
      this.#digests = tokens.map(digest);
      this.#logger.info({ file: this.#file, tokens: tokens.length }, "API_TOKENS_FILE changed: taking its tokens");
    } catch (error) {
      // Half written, emptied, or gone: the tokens that worked keep working until it is fixed.
      this.#logger.error({ file: this.#file, reason: (error as Error).message, tokens: this.#digests.length }, "API_TOKENS_FILE changed but cannot be used; keeping the tokens it had");
    }
  }
}

/** An onRequest hook refusing requests without one of the tokens (401 unauthorized). */
export function requireBearerToken(tokens: BearerTokens) {
  return (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void => {
    const match = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? "");
    if (match && tokens.takes(match[1]!)) return done();
    void reply.header("www-authenticate", 'Bearer realm="envoyage"');
    done(
      new ApiError(
        401,
        "unauthorized",
        match ? "the bearer token is not one this API takes (API_TOKENS_FILE)" : "this API takes requests with Authorization: Bearer <token> (API_TOKENS_FILE)",
      ),
    );
  };
}
