// The API's settings, from the environment (README, "Configuration").
import { envInt, envIpAddress, envLogLevel, envPort, registrySettings, type Env, type LogLevel, type RegistrySettings } from "@envoyage/registry";

export interface ApiConfig {
  registry: RegistrySettings;
  logLevel: LogLevel;
  host: string;
  port: number;
  bodyLimit: number;
  shutdownGraceMs: number;
}

export function loadConfig(env: Env): ApiConfig {
  return {
    registry: registrySettings(env),
    logLevel: envLogLevel(env),
    host: envIpAddress(env, "API_HOST", "0.0.0.0", { localhost: true }),
    port: envPort(env, "API_PORT", 8080),
    bodyLimit: envInt(env, "API_BODY_LIMIT", 256 * 1024, 1024, 16 * 1024 * 1024),
    shutdownGraceMs: envInt(env, "SHUTDOWN_GRACE_MS", 5000, 0, 600_000),
  };
}
