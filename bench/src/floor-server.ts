// The floor for propagation and bursts: Envoyage's own ADS server and snapshot store in a process
// of their own, without NATS, the API or the registry rules. The parent sends {services: {name:
// record}} over IPC; the server commits them at once, as one push. What the full path costs
// beyond this is NATS and the pipeline.
import { AdsServer, SnapshotStore } from "@envoyage/xds";
import { compileHotPathsSooner, type ServiceRecord } from "@envoyage/registry";

const listenerPort = Number(process.argv[2]);
const store = new SnapshotStore({ listenerAddress: "127.0.0.1", listenerPort });
store.markReady();
const quiet = { connect() {}, disconnect() {}, error() {}, push() {}, ack() {}, nack() {}, stale() {}, synced() {} };
const server = new AdsServer({ source: store, events: quiet });
const port = await server.listen("127.0.0.1", 0);
process.on("message", (message: { services: Record<string, ServiceRecord> }) => {
  for (const [name, record] of Object.entries(message.services)) store.setService(name, record);
  store.commit();
});
// Started, as a replica once it serves.
compileHotPathsSooner();
process.send!({ port });
