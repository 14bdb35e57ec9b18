// Configuration from the environment. Every setting has a default that matches the local stack
// (README, "Configuration"); a malformed value stops the process with a message naming it.
import { accessSync, constants } from "node:fs";
import { isIP } from "node:net";

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export type Env = Record<string, string | undefined>;

export function envString(env: Env, name: string, fallback: string): string {
  const value = env[name]?.trim();
  return value === undefined || value === "" ? fallback : value;
}

export function envInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

export function envPort(env: Env, name: string, fallback: number): number {
  // 0 asks the OS for a free port (tests use it); the bound port is logged.
  return envInt(env, name, fallback, 0, 65535);
}

/** A file this process can read (its path), or undefined when the variable is unset. */
export function envFile(env: Env, name: string): string | undefined {
  const path = envString(env, name, "");
  if (path === "") return undefined;
  try {
    accessSync(path, constants.R_OK);
  } catch (error) {
    throw new ConfigError(`${name} names a file this process cannot read: ${(error as Error).message}`);
  }
  return path;
}

/**
 * An IP address (IPv4 or IPv6), or also `localhost` where `options.localhost` allows it. Any other
 * name would be resolved only when binding and fail there, or, sent to Envoy as a listener's
 * address, be rejected by every Envoy.
 */
export function envIpAddress(env: Env, name: string, fallback: string, options: { localhost: boolean }): string {
  const value = envString(env, name, fallback);
  if (isIP(value) === 0 && !(options.localhost && value === "localhost")) {
    const accepted = options.localhost ? "an IP address or localhost" : "an IP address";
    throw new ConfigError(`${name} must be ${accepted} (such as ${fallback} or 127.0.0.1), got "${value}"`);
  }
  return value;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function envLogLevel(env: Env): LogLevel {
  const level = envString(env, "LOG_LEVEL", "info");
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${level}"`);
  }
  return level as LogLevel;
}
