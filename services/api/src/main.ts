#!/usr/bin/env node
// The HTTP API: validates service records and writes them to the KV bucket.
import { compileHotPathsSooner, createLogger, exitOnUnexpectedErrors, exitWhenNatsIsLost, LINK_DRAIN_MS, loadConfigOrExit, onTermination, requireSupportedNode } from "@envoyage/registry";
import { CLOSE_DRAIN_MS } from "./app.js";
import { loadConfig } from "./config.js";
import { startServer } from "./server.js";

requireSupportedNode("envoyage-api");
const config = loadConfigOrExit("envoyage-api", () => loadConfig(process.env));
const logger = createLogger("api", config.logLevel);
exitOnUnexpectedErrors(logger);

const api = await startServer(config, logger);
exitWhenNatsIsLost(api.link, logger);
logger.info({ port: api.port, bucket: config.registry.bucket }, "API listening");
void api.loaded.then(compileHotPathsSooner);

// Requests take up to the grace period; closing waits for requests on their way first, and
// closing NATS its drain.
onTermination(logger, config.shutdownGraceMs + CLOSE_DRAIN_MS + LINK_DRAIN_MS, async (signal) => {
  logger.info({ signal }, "shutting down: finishing requests in flight");
  await api.close();
  logger.info("stopped");
});
