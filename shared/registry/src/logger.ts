// One logger setup for both services: JSON lines on stdout (pino), with the component name and
// process id on every line so that the interleaved logs of a stack stay attributable.
import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export function createLogger(component: string, level: LogLevel): Logger {
  return pino({
    level,
    base: { component, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
