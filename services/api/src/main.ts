#!/usr/bin/env node
// The HTTP API: validates service records and writes them to the KV bucket.
import { createLogger, exitOnUnexpectedErrors, loadConfigOrExit, onTermination } from "@envoyage/registry";
import { loadConfig } from "./config.js";
import { startServer } from "./server.js";

const config = loadConfigOrExit("envoyage-api", () => loadConfig(process.env));
const logger = createLogger("api", config.logLevel);
exitOnUnexpectedErrors(logger);

const api = await startServer(config, logger);
logger.info({ port: api.port, bucket: config.registry.bucket }, "API listening");

onTermination(async (signal) => {
  logger.info({ signal }, "shutting down: finishing requests in flight");
  const timer = setTimeout(() => {
    logger.warn("requests still running after the grace period; exiting");
    process.exit(1);
  }, config.shutdownGraceMs);
  await api.close();
  clearTimeout(timer);
  logger.info("stopped");
});
