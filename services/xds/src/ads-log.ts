// ADS stream events as log lines: connects and NACKs at info/warn, every push and ACK at debug
// (with node id, type, version and nonce, to follow one change to one Envoy).
import type { Logger } from "pino";
import { typeName } from "./ads/resources.js";
import type { AdsEvents } from "./ads/server.js";
import type { AdsStream } from "./ads/stream.js";

export function loggingEvents(logger: Logger): AdsEvents {
  const ids = new WeakMap<AdsStream, number>();
  let nextId = 1;
  const context = (stream: AdsStream, typeUrl?: string) => ({
    stream: ids.get(stream),
    node: stream.nodeId || undefined,
    type: typeUrl ? typeName(typeUrl) : undefined,
  });
  // Every push and ACK of a fan-out passes here: build their fields only when they are logged.
  const debug = (stream: AdsStream, typeUrl: string | undefined, fields: () => object, message: string) => {
    if (logger.isLevelEnabled("debug")) logger.debug({ ...context(stream, typeUrl), ...fields() }, message);
  };
  return {
    connect(stream, peer) {
      ids.set(stream, nextId++);
      logger.info({ ...context(stream), peer, protocol: stream.protocol }, "ADS stream opened");
    },
    disconnect(stream, reason) {
      logger.info({ ...context(stream), reason }, "ADS stream closed");
    },
    error(stream, error) {
      logger.error({ ...context(stream), err: error }, "ADS stream failed");
    },
    push(stream, typeUrl, body) {
      debug(stream, typeUrl, () => ({ version: body.version, nonce: body.nonce, resources: body.count }), "push");
    },
    ack(stream, typeUrl, version, nonce) {
      debug(stream, typeUrl, () => ({ version, nonce }), "ACK");
    },
    nack(stream, typeUrl, version, nonce, error) {
      logger.warn({ ...context(stream, typeUrl), version, nonce, error }, "NACK: Envoy rejected the config and keeps its last accepted one");
    },
    stale(stream, typeUrl, nonce) {
      debug(stream, typeUrl, () => ({ nonce }), "ignored a request with a stale nonce");
    },
    synced(stream, serial) {
      debug(stream, undefined, () => ({ serial }), "Envoy holds the current config");
    },
  };
}
