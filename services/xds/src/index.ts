// What other workspaces (benchmarks, tools) use of the xDS service.
export * from "./translate/index.js";
export { AdsServer } from "./ads/server.js";
export { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from "./ads/resources.js";
export { Registry } from "./registry.js";
export { SnapshotStore } from "./snapshot.js";
