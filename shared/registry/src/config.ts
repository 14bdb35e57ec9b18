// Configuration from the environment. Every setting has a default that matches the local stack
// (README, "Configuration"); a malformed value stops the process with a message naming it.
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

export interface RegistrySettings {
  /** NATS_URL: one URL or a comma-separated list (every node of a cluster). */
  natsServers: string[];
  /** ENVOYAGE_BUCKET */
  bucket: string;
  /** ENVOYAGE_BUCKET_REPLICAS: stream replicas when the bucket is created (3 on a cluster). */
  bucketReplicas: number;
  /** NATS_TIMEOUT_MS: bound on each JetStream request. */
  natsTimeoutMs: number;
  /** ENVOYAGE_STATUS_BUCKET: where replicas publish sync status. */
  statusBucket: string;
}

const BUCKET_NAME = /^[-\w]+$/;

/** A server as the NATS client takes it: nats://host:port, tls://host:port, or host:port. */
function checkNatsUrl(server: string): void {
  const url = URL.parse(server.includes("://") ? server : `nats://${server}`);
  if (!url || !["nats:", "tls:"].includes(url.protocol) || url.hostname === "") {
    throw new ConfigError(`NATS_URL must be a comma-separated list of servers such as nats://127.0.0.1:4222 (nats:// or tls://), got "${server}"`);
  }
}

export function registrySettings(env: Env): RegistrySettings {
  const natsServers = envString(env, "NATS_URL", "nats://127.0.0.1:4222")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (natsServers.length === 0) throw new ConfigError("NATS_URL must name at least one server, such as nats://127.0.0.1:4222");
  for (const server of natsServers) checkNatsUrl(server);
  const bucket = envString(env, "ENVOYAGE_BUCKET", "envoyage");
  const statusBucket = envString(env, "ENVOYAGE_STATUS_BUCKET", `${bucket}-status`);
  for (const [name, value] of [["ENVOYAGE_BUCKET", bucket], ["ENVOYAGE_STATUS_BUCKET", statusBucket]]) {
    if (!BUCKET_NAME.test(value!)) throw new ConfigError(`${name} may hold letters, digits, "-" and "_" only, got "${value}"`);
  }
  return {
    natsServers,
    bucket,
    bucketReplicas: envInt(env, "ENVOYAGE_BUCKET_REPLICAS", 1, 1, 5),
    natsTimeoutMs: envInt(env, "NATS_TIMEOUT_MS", 800, 50, 60_000),
    statusBucket,
  };
}
