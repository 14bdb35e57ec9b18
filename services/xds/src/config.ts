// The replica's settings, from the environment (README, "Configuration").
import { hostname } from "node:os";
import { ConfigError, envFile, envInt, envIpAddress, envLogLevel, envPort, envString, registrySettings, type Env, type LogLevel, type RegistrySettings } from "@envoyage/registry";
import type { BatchSettings } from "./commit-scheduler.js";
import type { AdsTlsFiles } from "./ads/credentials.js";

export interface XdsConfig {
  registry: RegistrySettings;
  logLevel: LogLevel;
  /** Names this replica in logs and in the sync status other tools read. */
  replicaId: string;
  host: string;
  /** ADS (gRPC) port Envoy connects to. */
  xdsPort: number;
  /** Health and readiness over HTTP. */
  httpPort: number;
  /** Address and port of the HTTP listener the replicas configure in Envoy. */
  listenerAddress: string;
  listenerPort: number;
  /** How long SIGTERM waits for Envoys to move their streams elsewhere. */
  shutdownGraceMs: number;
  /** Burst coalescing and the standby's delay (commit-scheduler.ts). */
  batch: BatchSettings;
  /** Response bytes being written to all Envoys at once, at most (ads/write-budget.ts). */
  writeBudgetBytes: number;
  /** XDS_TLS_CERT, XDS_TLS_KEY, XDS_TLS_CLIENT_CA: ADS over TLS; undefined for plaintext. */
  tls: AdsTlsFiles | undefined;
}

function adsTls(env: Env): AdsTlsFiles | undefined {
  const [certFile, keyFile, clientCaFile] = ["XDS_TLS_CERT", "XDS_TLS_KEY", "XDS_TLS_CLIENT_CA"].map((name) => envFile(env, name));
  if (certFile === undefined && keyFile === undefined) {
    if (clientCaFile) throw new ConfigError("XDS_TLS_CLIENT_CA needs XDS_TLS_CERT and XDS_TLS_KEY: client certificates are checked over TLS");
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) throw new ConfigError("XDS_TLS_CERT and XDS_TLS_KEY go together: the replica's certificate and its private key");
  return { certFile, keyFile, clientCaFile };
}

export function loadConfig(env: Env): XdsConfig {
  const xdsPort = envPort(env, "XDS_PORT", 9090);
  return {
    registry: registrySettings(env),
    logLevel: envLogLevel(env),
    replicaId: envString(env, "REPLICA_ID", `${hostname()}:${xdsPort}`),
    host: envIpAddress(env, "XDS_HOST", "0.0.0.0", { localhost: true }),
    xdsPort,
    httpPort: envPort(env, "XDS_HTTP_PORT", 9190),
    // Envoy takes only an IP address for a listener, and the port is the one clients use.
    listenerAddress: envIpAddress(env, "LISTENER_ADDRESS", "0.0.0.0", { localhost: false }),
    listenerPort: envInt(env, "LISTENER_PORT", 10000, 1, 65535),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 5000, 0, 600_000),
    batch: {
      windowMs: envInt(env, "COMMIT_BATCH_MS", 50, 0, 600_000),
      burst: envInt(env, "COMMIT_BURST", 25, 0, 100_000),
      standbyMs: envInt(env, "COMMIT_STANDBY_MS", 20, 0, 60_000),
    },
    writeBudgetBytes: envInt(env, "XDS_WRITE_BUDGET_MB", 64, 1, 65_536) * 1024 * 1024,
    tls: adsTls(env),
  };
}
