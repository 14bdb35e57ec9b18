// Requests refused before any route sees them: a path Fastify cannot route, and HTTP Node cannot
// parse. Fastify and Node answer those in shapes of their own ({"error":"Bad Request",
// "code":"FST_ERR_BAD_URL",…}); here they get the API's, like every other error.
import type { Socket } from "node:net";
import { STATUS_CODES } from "node:http";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "./errors.js";

/** Fastify's `frameworkErrors`: a path with broken percent-encoding, or a path parameter past the router's limit. */
export function routingError(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const apiError =
    error.code === "FST_ERR_MAX_PARAM_LENGTH"
      ? // The only path parameter is a service name, whose limit is far below the router's.
        new ApiError(400, "invalid_name", "service name must be at most 63 characters long", { field: "name" })
      : error.code === "FST_ERR_BAD_URL"
        ? new ApiError(400, "invalid_url", "the request's path is not valid percent-encoding")
        : new ApiError(400, "bad_request", error.message);
  void reply.status(apiError.status).send(apiError.body());
}

/** Node's clientError: the request is not HTTP it can parse (its headers too large, framing broken) or came too slowly. */
export function clientError(error: NodeJS.ErrnoException, socket: Socket): void {
  // A reset connection has nobody to answer.
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const apiError =
    error.code === "HPE_HEADER_OVERFLOW"
      ? new ApiError(431, "headers_too_large", "the request's headers are over Node's limit (16 KiB by default)")
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? new ApiError(408, "request_timeout", "the request did not arrive in time")
        : new ApiError(400, "bad_request", `the request is not valid HTTP/1.1 (${error.code ?? error.message})`);
  const body = JSON.stringify(apiError.body());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${apiError.status} ${STATUS_CODES[apiError.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}
