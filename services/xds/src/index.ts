export * from "./translate/index.js";
