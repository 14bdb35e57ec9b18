// One logger setup for both services: JSON lines on stdout (pino), with the service name and
// process id on every line so that the interleaved logs of a stack stay attributable.
import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export function createLogger(service: string, level: LogLevel): Logger {
  return pino({
    level,
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
