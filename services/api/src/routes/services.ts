// /v1/services: create or replace, read, list and delete service records.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply } from "fastify";
import { Type } from "typebox";
import { logChange } from "../access-log.js";
import { ApiError, notFound } from "../errors.js";
import type { RegistryAccess } from "../registry-access.js";
import type { StatusView } from "../status-view.js";
import type { Precondition, StoredService as Stored } from "../service-store.js";
import { methodNotAllowed } from "./method-not-allowed.js";
import { ErrorBody, IfMatchHeaders, ListQuery, NameParams, NoQuery, PutHeaders, ServiceList, ServiceRecordSchema, StoredService } from "./schemas.js";

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((status) => [status, ErrorBody]));

/** Parses If-Match: "*", or revisions quoted like our ETags (or not), comma-separated (RFC 9110: any of them matches). */
function precondition(header: string | undefined): Precondition {
  if (header === undefined) return undefined;
  // Empty elements ("7", or a proxy's merged empty line) are ignored, as RFC 9110 asks of lists.
  const values = header
    .split(",")
    .map((value) => value.trim())
    .filter((value) => value !== "");
  // If-Match compares strongly (RFC 9110): a weak ETag would never match, so say why instead.
  if (values.some((value) => value.startsWith("W/"))) {
    throw new ApiError(400, "invalid_if_match", `If-Match takes the ETag as GET gives it (such as "12"), not a weak one: got ${JSON.stringify(header)}`);
  }
  const unquoted = values.map((value) => value.replace(/^"(.*)"$/, "$1"));
  if (unquoted.length === 0) throw new ApiError(400, "invalid_if_match", 'If-Match is empty: send "*" or revisions such as "12"');
  if (unquoted.length === 1 && unquoted[0] === "*") return "*";
  if (unquoted.every((value) => /^[0-9]{1,15}$/.test(value))) return unquoted.map(Number);
  throw new ApiError(400, "invalid_if_match", `If-Match must be "*" or revisions such as "12" (or "12", "14"), got ${JSON.stringify(header)}`);
}

/** A PUT's precondition: If-Match, or If-None-Match: * (create only), not both. */
function putPrecondition(ifMatch: string | undefined, ifNoneMatch: string | undefined): Precondition {
  if (ifNoneMatch === undefined) return precondition(ifMatch);
  if (ifNoneMatch.trim() !== "*") throw new ApiError(400, "invalid_if_none_match", `only If-None-Match: * is supported (create if absent), got ${JSON.stringify(ifNoneMatch)}`);
  if (ifMatch !== undefined) throw new ApiError(400, "invalid_if_none_match", "send If-Match or If-None-Match, not both");
  return "absent";
}

function render(service: Stored, status?: ReturnType<StatusView["serviceStatus"]>) {
  const base = service.record
    ? { name: service.name, revision: service.revision, domains: service.record.domains, endpoints: service.record.endpoints }
    : { name: service.name, revision: service.revision, problem: service.problem };
  return status ? { ...base, status } : base;
}

const etag = Type.String({ description: 'The revision written, quoted ("12"): send it back in If-Match.' });
/** A PUT's answer, with the headers it carries (documented in the OpenAPI document). */
const written = (how: "created" | "replaced") => ({
  ...StoredService,
  headers:
    how === "created"
      ? { etag, location: Type.String({ description: "Where the service now is: /v1/services/{name}." }) }
      : { etag },
});

const withEtag = (reply: FastifyReply, revision: number) => reply.header("etag", `"${revision}"`);

export const serviceRoutes: FastifyPluginAsyncTypebox<{ registry: RegistryAccess; status: StatusView }> = async (app, { registry, status }) => {
  app.put(
    "/v1/services/:name",
    {
      schema: {
        summary: "Create or replace a service",
        params: NameParams,
        querystring: NoQuery,
        headers: PutHeaders,
        body: ServiceRecordSchema,
        response: { 200: written("replaced"), 201: written("created"), ...errors(400, 409, 412, 413, 415, 503, 507) },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const expected = putPrecondition(request.headers["if-match"], request.headers["if-none-match"]);
      const { service, created } = await registry.run((store, abandoned) => store.put(name, request.body, expected, abandoned));
      logChange(request, reply, { message: created ? "service created" : "service replaced", service: name, revision: service.revision });
      if (created) void reply.header("location", `/v1/services/${name}`);
      return withEtag(reply, service.revision).status(created ? 201 : 200).send(render(service));
    },
  );

  app.get(
    "/v1/services",
    { schema: { summary: "List services", querystring: ListQuery, response: { 200: ServiceList, ...errors(400, 503) } } },
    async (request) => {
      const { limit, after } = request.query;
      const { services, more } = await registry.run((store) => store.list({ after, limit: limit === undefined ? undefined : Number(limit) }));
      const connected = status.connectedRevisions();
      const listed = services.map((service) => render(service, status.serviceStatus(service.name, service.revision, connected)));
      return more ? { services: listed, next: services.at(-1)!.name } : { services: listed };
    },
  );

  app.get(
    "/v1/services/:name",
    {
      schema: { summary: "Read a service", params: NameParams, querystring: NoQuery, response: { 200: StoredService, ...errors(400, 404, 503) } },
    },
    async (request, reply) => {
      const { name } = request.params;
      const service = await registry.run((store) => store.get(name));
      if (!service) throw notFound(name);
      return withEtag(reply, service.revision).send(render(service, status.serviceStatus(name, service.revision)));
    },
  );

  app.delete(
    "/v1/services/:name",
    {
      schema: {
        summary: "Delete a service",
        params: NameParams,
        querystring: NoQuery,
        headers: IfMatchHeaders,
        response: { 204: Type.Null({ description: "Deleted" }), ...errors(400, 404, 409, 412, 413, 415, 503, 507) },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      // Refused rather than ignored: a delete conditional on the service being absent (or on its
      // revision not matching) is not something a DELETE here does, and ignoring it deleted.
      if (request.headers["if-none-match"] !== undefined) {
        throw new ApiError(400, "invalid_if_none_match", "DELETE takes If-Match (delete only that revision), not If-None-Match");
      }
      const ifMatch = precondition(request.headers["if-match"]);
      if (!(await registry.run((store, abandoned) => store.delete(name, ifMatch, abandoned)))) throw notFound(name);
      logChange(request, reply, { message: "service deleted", service: name });
      return reply.status(204).send(null);
    },
  );

  app.route(methodNotAllowed("/v1/services/:name", ["GET", "PUT", "DELETE"]));
  // `PUT /v1/services/` too (a trailing slash is ignored): a script whose service name came out empty.
  app.route(methodNotAllowed("/v1/services", ["GET"], " (a service is written and deleted at /v1/services/{name})"));
};
