import type { AdsEvents } from "./server.js";

/** One AdsEvents that forwards every event to each of `all` that wants it (logs, metrics, sync status, the replica). */
export function combineEvents(...all: Partial<AdsEvents>[]): AdsEvents {
  return {
    connect: (...args) => all.forEach((e) => e.connect?.(...args)),
    disconnect: (...args) => all.forEach((e) => e.disconnect?.(...args)),
    error: (...args) => all.forEach((e) => e.error?.(...args)),
    push: (...args) => all.forEach((e) => e.push?.(...args)),
    ack: (...args) => all.forEach((e) => e.ack?.(...args)),
    nack: (...args) => all.forEach((e) => e.nack?.(...args)),
    stale: (...args) => all.forEach((e) => e.stale?.(...args)),
    synced: (...args) => all.forEach((e) => e.synced?.(...args)),
  };
}
