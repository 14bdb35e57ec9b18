// The memory floor for fan-out: a grpc-js ADS server, on the generated service definition, that
// accepts streams and reads their requests but never answers, with the replicas' transport
// options and runtime flags. What a control plane costs per idle stream beyond this is its own.
// Asked "heap" over IPC, it reports its JS heap after a full GC (run with --expose-gc).
import * as grpc from "@grpc/grpc-js";
import { AggregatedDiscoveryServiceService } from "@envoyage/proto/envoy/service/discovery/v3/ads.js";

const server = new grpc.Server({ "grpc.enable_channelz": 0 });
const held: unknown[] = [];
const hold = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
  held.push(call);
  call.on("data", () => {});
  call.on("error", () => {});
};
server.addService(AggregatedDiscoveryServiceService, { streamAggregatedResources: hold, deltaAggregatedResources: hold });
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.send!({ port });
});
process.on("message", (message) => {
  if (message !== "heap") return;
  globalThis.gc?.();
  process.send!({ heapUsed: process.memoryUsage().heapUsed });
});
