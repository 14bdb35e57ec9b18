// 405 for a known path asked with a method it does not have, instead of Fastify's 404; OPTIONS
// says which it has.
import type { FastifyReply, FastifyRequest, RouteOptions } from "fastify";
import { ApiError } from "../errors.js";

/**
 * Routes a known path's other methods to 405 with the methods it has, and OPTIONS to 204 with
 * them. Answered in onRequest, before the body is read: its content type or size must not turn a
 * 405 into a 415 or 413.
 */
export function methodNotAllowed(url: string, has: string[], hint = ""): RouteOptions {
  const allow = [...(has.includes("GET") ? [...has, "HEAD"] : has), "OPTIONS"].join(", ");
  const answer = async (request: FastifyRequest, reply: FastifyReply) => {
    void reply.header("allow", allow);
    if (request.method === "OPTIONS") return reply.status(204).send();
    return reply.status(405).send(new ApiError(405, "method_not_allowed", `${request.method} is not allowed on ${url}; use ${allow}${hint}`).body());
  };
  const others: RouteOptions["method"] = ["GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"].filter((method) => !has.includes(method));
  return { method: others, url, schema: { hide: true }, onRequest: answer, handler: answer };
}
