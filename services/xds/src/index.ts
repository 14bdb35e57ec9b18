export * from "./translate/index.js";
export { AdsServer } from "./ads/server.js";
export { SnapshotStore } from "./snapshot.js";
