// The API process's parts wired together: HTTP first (so probes answer 503 while NATS is
// away), then the NATS connection and the bucket, created when missing.
import type { AddressInfo } from "node:net";
import { jetstream } from "@nats-io/jetstream";
import { NatsLink, openBucket, openStatusBucket } from "@envoyage/registry";
import type { Logger } from "pino";
import { BearerTokens } from "./bearer-auth.js";
import { buildApp, type App } from "./app.js";
import type { ApiConfig } from "./config.js";
import { RegistryAccess } from "./registry-access.js";
import { RegistryView } from "./registry-view.js";
import { ServiceStore } from "./service-store.js";
import { StatusView } from "./status-view.js";

const BIND_RETRY_MS = 500;

export interface RunningApi {
  app: App;
  /** The API's NATS connection. */
  link: NatsLink;
  port: number;
  /** Resolves once connected and bound to the bucket. */
  bound: Promise<void>;
  /** Resolves once the registry has first been loaded (ready from then on, while NATS is). */
  loaded: Promise<void>;
  close(): Promise<void>;
}

export async function startServer(config: ApiConfig, logger: Logger): Promise<RunningApi> {
  const link = new NatsLink({ servers: config.registry.natsServers, access: config.registry.natsAccess, name: "envoyage-api", logger });
  // Answer within a second even when several NATS requests each wait for their timeout: a NATS
  // request that times out answers first (its error says more), with room to spare for a busy
  // machine (a 503 took 1,010 ms at the client with a 950-ms bound, on 2 shared cores).
  const registry = new RegistryAccess(link, config.registry.natsTimeoutMs + 50);
  const { bucket, bucketReplicas: replicas, natsTimeoutMs: timeoutMs, statusBucket } = config.registry;
  const openRegistry = async () => openBucket(await link.connect(), { bucket, create: true, replicas, timeoutMs });
  const view = new RegistryView({ link, bucket, timeoutMs, logger, open: openRegistry });
  const status = new StatusView({
    link,
    bucket: statusBucket,
    timeoutMs,
    logger,
    open: async () => openStatusBucket(jetstream(await link.connect(), { timeout: timeoutMs }), statusBucket, replicas),
  });
  const tokens = config.tokens && new BearerTokens(config.tokens.file, config.tokens.tokens, logger);
  const app = await buildApp({ registry, status, logger, bodyLimit: config.bodyLimit, tokens });
  await app.listen({ host: config.host, port: config.port });
  let closing = false;

  const bound = (async () => {
    while (!closing) {
      try {
        registry.bind(new ServiceStore(await openRegistry(), view));
        logger.info({ bucket }, "bucket ready: accepting writes");
        void view.start();
        void status.start();
        return;
      } catch (error) {
        logger.warn({ reason: (error as Error).message }, "cannot create or bind the bucket yet (a NATS cluster may still be electing its leaders); retrying");
        await new Promise((resolve) => setTimeout(resolve, BIND_RETRY_MS));
      }
    }
  })();

  return {
    app,
    link,
    port: (app.server.address() as AddressInfo).port,
    bound,
    loaded: view.firstLoaded,
    async close() {
      closing = true;
      // HTTP first: requests in flight finish on views still following the bucket, and none is
      // answered from a view that stopped.
      await app.close();
      tokens?.close();
      await Promise.all([status.stop(), view.stop()]);
      await link.close();
    },
  };
}
