#!/usr/bin/env node
// An xDS replica: watches the bucket, translates the registry, serves it to Envoy over ADS.
import type { AddressInfo } from "node:net";
import { jetstream } from "@nats-io/jetstream";
import { compileHotPathsSooner, createLogger, exitOnUnexpectedErrors, exitWhenNatsIsLost, LINK_DRAIN_MS, loadConfigOrExit, NatsLink, onTermination, openStatusBucket, requireSupportedNode } from "@envoyage/registry";
import { adsCredentials } from "./ads/credentials.js";
import { AdsServer } from "./ads/server.js";
import { combineEvents } from "./ads/events.js";
import { loggingEvents } from "./ads-log.js";
import { XdsMetrics } from "./metrics.js";
import { loadConfig } from "./config.js";
import { Replica } from "./replica.js";
import { rejectedServicesByCommit, replicaReport, replicaStatus } from "./replica-status.js";
import { SnapshotStore } from "./snapshot.js";
import { sharedNodeIdEvents } from "./shared-node-ids.js";
import { StatusPublisher } from "./status-publisher.js";
import { startStatusServer } from "./status-server.js";
import { CHECK_EVERY_MS, UnansweredPushes } from "./unanswered-pushes.js";
import { UnrequestedEndpoints } from "./unrequested-endpoints.js";

requireSupportedNode("envoyage-xds");
const config = loadConfigOrExit("envoyage-xds", () => loadConfig(process.env));
const logger = createLogger("xds", config.logLevel).child({ replica: config.replicaId });
exitOnUnexpectedErrors(logger);

const link = new NatsLink({ servers: config.registry.natsServers, access: config.registry.natsAccess, name: `envoyage-xds ${config.replicaId}`, logger });
exitWhenNatsIsLost(link, logger);
const store = new SnapshotStore({ listenerAddress: config.listenerAddress, listenerPort: config.listenerPort });
const metrics: XdsMetrics = new XdsMetrics(store, {
  streamCounts: () => ads.streamCounts(),
  writes: () => ads.writes,
  services: () => replica.registry.counts(),
  ignoredKeys: () => replica.ignoredKeys.count,
  ready: () => replica.ready,
  revision: () => replica.revision,
  statusPublishFailures: () => publisher.failures,
});
const replica: Replica = new Replica({
  link,
  settings: config.registry,
  logger,
  store,
  batch: config.batch,
  events: metrics.replicaEvents(),
  served: () => ads.streamCount > 0,
});
const publisher = new StatusPublisher({
  replicaId: config.replicaId,
  logger,
  store,
  report: () => replicaReport(config.replicaId, replica),
  rejected: rejectedServicesByCommit(replica),
});
const unanswered = new UnansweredPushes(logger, () => ads.streams());
const unrequested = new UnrequestedEndpoints(logger, () => ads.streams());
const ads: AdsServer = new AdsServer({
  source: store,
  // An Envoy connecting to a standby gets its delayed commit first (CommitScheduler.flush).
  events: combineEvents(loggingEvents(logger), sharedNodeIdEvents(logger), metrics.adsEvents(), publisher.events(), unanswered.events(), {
    connect: () => replica.envoyConnected(),
  }),
  writeBudgetBytes: config.writeBudgetBytes,
});

const xdsPort = await ads.listen(config.host, config.xdsPort, adsCredentials(config.tls));
const status = await startStatusServer(config.host, config.httpPort, {
  ready: () => replica.ready,
  status: () => replicaStatus(config.replicaId, replica, store, ads),
  metrics: metrics.registry,
});
logger.info(
  {
    xdsPort,
    xdsTls: config.tls ? (config.tls.clientCaFile ? "mutual (XDS_TLS_CLIENT_CA)" : "server certificate only") : "none",
    httpPort: (status.address() as AddressInfo).port,
    listenerPort: config.listenerPort,
    bucket: config.registry.bucket,
  },
  "xDS replica started; loading the registry",
);
void replica.start();
// Both look at every stream once a second; the timer keeps no process alive.
const streamChecks = setInterval(() => {
  const now = performance.now();
  unanswered.check(now);
  unrequested.check(now);
}, CHECK_EVERY_MS).unref();
const untilServing = store.onCommit(() => {
  if (!store.ready) return;
  untilServing();
  compileHotPathsSooner();
});
link.onEvent((event) => {
  if (event === "reconnected") publisher.reconnected();
});
void publisher.start(async () =>
  openStatusBucket(jetstream(await link.connect(), { timeout: config.registry.natsTimeoutMs }), config.registry.statusBucket, config.registry.bucketReplicas),
);

// Handing Envoys over takes up to the grace period; the last status write up to two requests
// (opening the status bucket again, if it was lost, then the write), closing NATS its drain.
onTermination(logger, config.shutdownGraceMs + 2 * config.registry.natsTimeoutMs + LINK_DRAIN_MS, async (signal) => {
  logger.info({ signal, streams: ads.streamCount }, "shutting down: handing Envoys over to other replicas");
  await ads.shutdown(config.shutdownGraceMs);
  clearInterval(streamChecks);
  await publisher.stop();
  status.close();
  await replica.stop();
  await link.close();
  logger.info("stopped");
});
