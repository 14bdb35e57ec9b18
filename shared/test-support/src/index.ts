export * from "./envoy.js";
export * from "./envoyage.js";
export * from "./nats.js";
export * from "./ports.js";
export * from "./process.js";
export * from "./tools.js";
export * from "./upstream.js";
export * from "./wait.js";
