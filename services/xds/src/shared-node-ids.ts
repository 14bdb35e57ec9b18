// Envoys presenting the same node id to this replica. Sync status is kept per node id (README,
// "Your own Envoys"), so theirs merge into one line and count as one Envoy: a bootstrap copied
// without changing node.id is easy to miss, so it is said, once while it lasts.
import type { Logger } from "pino";
import type { AdsEvents } from "./ads/server.js";
import type { AdsStream } from "./ads/stream.js";

export function sharedNodeIdEvents(logger: Logger): Partial<AdsEvents> {
  const streamsByNode = new Map<string, Set<AdsStream>>();
  const nodeOf = new WeakMap<AdsStream, string>();
  // A stream has said who it is by the time it is first answered.
  const identified = (stream: AdsStream) => {
    if (!stream.nodeId || nodeOf.has(stream)) return;
    nodeOf.set(stream, stream.nodeId);
    const streams = streamsByNode.get(stream.nodeId) ?? new Set<AdsStream>();
    streams.add(stream);
    streamsByNode.set(stream.nodeId, streams);
    if (streams.size === 2) {
      logger.warn(
        { node: stream.nodeId },
        "two Envoys present the same node id to this replica: give each its own node.id, or their sync status merges into one line",
      );
    }
  };
  return {
    push: identified,
    disconnect(stream) {
      const node = nodeOf.get(stream);
      const streams = node === undefined ? undefined : streamsByNode.get(node);
      if (!streams) return;
      streams.delete(stream);
      if (streams.size === 0) streamsByNode.delete(node!);
    },
  };
}
