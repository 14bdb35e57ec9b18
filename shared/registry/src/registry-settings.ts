// The settings both services share: where NATS is, how to reach it, and the buckets (README,
// "Configuration").
import { ConfigError, envInt, envString, type Env } from "./config.js";
import { natsAccess, type NatsAccess } from "./nats-access.js";

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
  /** NATS_USER, NATS_PASSWORD, NATS_CREDS, NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY. */
  natsAccess: NatsAccess;
}

const BUCKET_NAME = /^[-\w]+$/;

/** A server as the NATS client takes it: nats://host:port, tls://host:port, or host:port. */
function checkNatsUrl(server: string): void {
  const url = URL.parse(server.includes("://") ? server : `nats://${server}`);
  if (!url || !["nats:", "tls:"].includes(url.protocol) || url.hostname === "") {
    // Echoed without what may be credentials before an "@".
    const shown = server.replace(/^([a-z]+:\/\/)?.*@/i, "$1…@");
    throw new ConfigError(`NATS_URL must be a comma-separated list of servers such as nats://127.0.0.1:4222 (nats:// or tls://), got "${shown}"`);
  }
  // Refused rather than taken: URLs are logged (here, by nats-server, by tools), secrets are not.
  if (url.username !== "" || url.password !== "") {
    throw new ConfigError(`NATS_URL must not carry credentials (${url.protocol}//${url.host}): set NATS_USER and NATS_PASSWORD (or NATS_CREDS, NATS_NKEY) instead`);
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
    natsAccess: natsAccess(env),
  };
}
