// API_TOKENS_FILE: clients of /v1 present one of its tokens as `Authorization: Bearer <token>`.
// The probes, /metrics and /openapi.json stay open: load balancers and Prometheus call them.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError } from "@envoyage/registry";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "./errors.js";

/** Shorter tokens are refused at start: guessable, or a file that holds something else. */
const MIN_TOKEN_LENGTH = 16;

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

/**
 * An onRequest hook refusing requests without one of `tokens` (401 unauthorized). Digests are
 * compared in constant time, so the answer's timing says nothing of how much of a token matched.
 */
export function requireBearerToken(tokens: readonly string[]) {
  const known = tokens.map(digest);
  return (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void => {
    const match = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? "");
    if (match) {
      const presented = digest(match[1]!);
      // Every token is compared, found or not: the time does not say which one matched.
      let valid = false;
      for (const token of known) valid = timingSafeEqual(token, presented) || valid;
      if (valid) return done();
    }
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
