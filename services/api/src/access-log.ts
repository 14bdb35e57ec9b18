// The API's access log: one JSON line per request. A write's line also says what it changed
// (service, revision), so a change costs one log write, not an audit line and an access line.
import { LogController, type FastifyReply, type FastifyRequest } from "fastify";

/** What a write changed, logged on its request's line. */
export interface LoggedChange {
  message: "service created" | "service replaced" | "service deleted";
  service: string;
  revision?: number;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by a route that changed the registry; null otherwise. */
    change: LoggedChange | null;
  }
}

const PROBES = new Set(["/healthz", "/readyz", "/metrics"]);

/**
 * Notes what a write changed, for its access-log line. Fastify logs a request once its answer is
 * sent; a client that left before (a timeout while NATS took the write) never gets one, so the
 * change is logged when the connection closes instead: the log keeps every write.
 */
export function logChange(request: FastifyRequest, reply: FastifyReply, change: LoggedChange): void {
  request.change = change;
  const logIfUnanswered = () => {
    if (reply.raw.writableFinished) return;
    reply.log.warn({ method: request.method, url: request.url, service: change.service, revision: change.revision }, `${change.message}; the client left before the answer`);
  };
  // The connection may have closed already, while NATS took the write.
  if (reply.raw.destroyed || request.raw.socket.destroyed) logIfUnanswered();
  else reply.raw.once("close", logIfUnanswered);
}

/** Probes only at debug, so they do not drown the log. */
export class AccessLog extends LogController {
  override incomingRequest(): void {}
  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const { change } = request;
    const line = {
      method: request.method,
      url: request.url,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      ...(change && { service: change.service, revision: change.revision }),
    };
    if (error) reply.log.error({ ...line, err: error }, change ? `${change.message}; the response failed` : "request failed");
    else if (change) reply.log.info(line, change.message);
    else if (PROBES.has(request.url)) reply.log.debug(line, "request");
    else reply.log.info(line, "request");
  }
}
