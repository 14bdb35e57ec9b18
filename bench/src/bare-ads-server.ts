// The memory floor for fan-out: a server that accepts ADS streams and reads their requests but
// never answers, with the replicas' transport options and runtime flags. With "grpc-js" it is a
// grpc-js server on the generated service definition; with "http2" it is Node's HTTP/2 server
// alone, the transport grpc-js runs on. What a control plane costs per idle stream beyond this is
// its own. Asked "heap" over IPC, it reports its JS heap after a full GC (run with --expose-gc).
import { createServer, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { AggregatedDiscoveryServiceService } from "@envoyage/proto/envoy/service/discovery/v3/ads.js";

const held: unknown[] = [];

function grpcJs(): void {
  const server = new grpc.Server({ "grpc.enable_channelz": 0 });
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
}

function nodeHttp2(): void {
  const server = createServer();
  server.on("stream", (stream: ServerHttp2Stream) => {
    held.push(stream);
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    stream.on("data", () => {});
    stream.on("error", () => {});
  });
  server.listen(0, "127.0.0.1", () => process.send!({ port: (server.address() as AddressInfo).port }));
}

if (process.argv[2] === "http2") nodeHttp2();
else grpcJs();
process.on("message", (message) => {
  if (message !== "heap") return;
  globalThis.gc?.();
  process.send!({ heapUsed: process.memoryUsage().heapUsed });
});
