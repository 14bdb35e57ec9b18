#!/usr/bin/env node
// An xDS replica: watches the bucket, translates the registry, serves it to Envoy over ADS.
import type { AddressInfo } from "node:net";
import { ConfigError, createLogger, NatsLink } from "@envoyage/registry";
import { AdsServer } from "./ads/server.js";
import { loggingEvents } from "./ads-log.js";
import { loadConfig } from "./config.js";
import { Replica } from "./replica.js";
import { SnapshotStore } from "./snapshot.js";
import { startStatusServer } from "./status-server.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`envoyage-xds: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger("xds", config.logLevel).child({ replica: config.replicaId });
  process.on("uncaughtException", (error) => {
    logger.fatal({ err: error }, "uncaught exception");
    process.exit(1);
  });
  process.on("unhandledRejection", (error) => {
    logger.fatal({ err: error }, "unhandled rejection");
    process.exit(1);
  });

  const link = new NatsLink({ servers: config.registry.natsServers, name: `envoyage-xds ${config.replicaId}`, logger });
  const store = new SnapshotStore({ listenerAddress: config.listenerAddress, listenerPort: config.listenerPort });
  const replica = new Replica({ link, settings: config.registry, logger, store });
  const ads = new AdsServer({ source: store, events: loggingEvents(logger) });

  const xdsPort = await ads.listen(config.host, config.xdsPort);
  const status = await startStatusServer(config.host, config.httpPort, {
    ready: () => replica.ready,
    details: () => ({ replica: config.replicaId, revision: replica.revision, streams: ads.streamCount }),
  });
  logger.info(
    { xdsPort, httpPort: (status.address() as AddressInfo).port, listenerPort: config.listenerPort, bucket: config.registry.bucket },
    "xDS replica started; loading the registry",
  );
  void replica.start();

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, streams: ads.streamCount }, "shutting down: handing Envoys over to other replicas");
    await ads.shutdown(config.shutdownGraceMs);
    status.close();
    await replica.stop();
    await link.close();
    logger.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

await main();
