#!/usr/bin/env node
// The HTTP API: validates service records and writes them to the KV bucket.
import { ConfigError, createLogger } from "@envoyage/registry";
import { loadConfig } from "./config.js";
import { startServer } from "./server.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`envoyage-api: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger("api", config.logLevel);
  process.on("uncaughtException", (error) => {
    logger.fatal({ err: error }, "uncaught exception");
    process.exit(1);
  });
  process.on("unhandledRejection", (error) => {
    logger.fatal({ err: error }, "unhandled rejection");
    process.exit(1);
  });

  const api = await startServer(config, logger);
  logger.info({ port: api.port, bucket: config.registry.bucket }, "API listening");

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down: finishing requests in flight");
    const timer = setTimeout(() => {
      logger.warn("requests still running after the grace period; exiting");
      process.exit(1);
    }, config.shutdownGraceMs);
    await api.close();
    clearTimeout(timer);
    logger.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

await main();
