// The API's settings, from the environment (README, "Configuration").
import { envFile, envInt, envIpAddress, envLogLevel, envPort, registrySettings, type Env, type LogLevel, type RegistrySettings } from "@envoyage/registry";
import { readTokens } from "./bearer-auth.js";

export interface ApiConfig {
  registry: RegistrySettings;
  logLevel: LogLevel;
  host: string;
  port: number;
  bodyLimit: number;
  shutdownGraceMs: number;
  /** API_TOKENS_FILE and the bearer tokens it held at start; undefined: /v1 is open to all (the default, for loopback). */
  tokens: { file: string; tokens: string[] } | undefined;
}

export function loadConfig(env: Env): ApiConfig {
  return {
    registry: registrySettings(env),
    logLevel: envLogLevel(env),
    host: envIpAddress(env, "API_HOST", "0.0.0.0", { localhost: true }),
    port: envPort(env, "API_PORT", 8080),
    bodyLimit: envInt(env, "API_BODY_LIMIT", 256 * 1024, 1024, 16 * 1024 * 1024),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 5000, 0, 600_000),
    tokens: tokensFrom(envFile(env, "API_TOKENS_FILE")),
  };
}

const tokensFrom = (file: string | undefined) => (file === undefined ? undefined : { file, tokens: readTokens(file) });
