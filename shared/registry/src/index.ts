export * from "./config.js";
export * from "./kv.js";
export * from "./lifecycle.js";
export * from "./logger.js";
export * from "./nats.js";
export * from "./record.js";
export * from "./status.js";
export * from "./validation.js";
