// The Fastify application: routes, validation from the one record schema, JSON errors, OpenAPI.
import swagger from "@fastify/swagger";
import fastifyPlugin from "fastify-plugin";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { ADDRESS_FORMAT, AJV_OPTIONS, addRecordFormats, describeValidationError, formatProblem } from "@envoyage/registry";
import Fastify, { type FastifyError, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { AccessLog } from "./access-log.js";
import { requireBearerToken, type BearerTokens } from "./bearer-auth.js";
import { ApiError } from "./errors.js";
import { clientError, routingError } from "./framework-errors.js";
import { parseJsonBody } from "./json-body.js";
import type { RegistryAccess } from "./registry-access.js";
import { envoyRoutes } from "./routes/envoys.js";
import type { StatusView } from "./status-view.js";
import { metricsPlugin } from "./metrics.js";
import { healthRoutes } from "./routes/health.js";
import { ErrorBody, QUERY_PATTERNS_IN_WORDS } from "./routes/schemas.js";
import { serviceRoutes } from "./routes/services.js";

export interface AppOptions {
  registry: RegistryAccess;
  status: StatusView;
  logger: Logger;
  /** Largest accepted request body, in bytes. */
  bodyLimit: number;
  /** Bearer tokens /v1 requires (API_TOKENS_FILE); undefined: open. */
  tokens?: BearerTokens | undefined;
}

/** Maps framework errors (validation, parsing, size) to the API's JSON error shape. */
function toApiError(error: FastifyError, request: FastifyRequest, bodyLimit: number): ApiError {
  if (error instanceof ApiError) return error;
  // No body and no content type: nothing was parsed, and the schema would only say "must be object".
  if (error.validationContext === "body" && request.body === undefined) {
    return new ApiError(400, "invalid_json", "the request has no body: send the service record as JSON");
  }
  if (error.validation && error.validation.length > 0) {
    const problem = describeValidationError(error.validation[0] as Parameters<typeof describeValidationError>[0]);
    if (error.validationContext === "params") {
      return new ApiError(400, "invalid_name", `service name ${problem.message}`, { field: "name" });
    }
    if (error.validationContext === "querystring") {
      const parameter = problem.field.replace(/^\//, "");
      const { keyword, params } = error.validation[0]!;
      const message =
        keyword === "additionalProperties"
          ? "is not a parameter this request takes"
          : Array.isArray((request.query as Record<string, unknown>)[parameter])
            ? "is given more than once"
            : (QUERY_PATTERNS_IN_WORDS[String(params["pattern"])] ?? problem.message);
      return new ApiError(400, "invalid_query", `query parameter "${parameter}" ${message}`, { field: parameter });
    }
    return new ApiError(400, "invalid_record", formatProblem(problem), { field: problem.field });
  }
  switch (error.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ApiError(413, "body_too_large", `the request body is over the API's limit of ${bodyLimit} bytes (API_BODY_LIMIT)`);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError(415, "unsupported_media_type", "send the record as application/json");
    default:
      if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
        return new ApiError(error.statusCode, "bad_request", error.message);
      }
      return new ApiError(500, "internal", "internal error; see the API's log");
  }
}

/** What a 503 tells clients to wait before retrying (Retry-After). */
const RETRY_AFTER_SECONDS = "1";

/** How long a closing API keeps kept-alive connections open for requests already on their way. */
export const CLOSE_DRAIN_MS = 300;

export async function buildApp(options: AppOptions) {
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new AccessLog(),
    bodyLimit: options.bodyLimit,
    // `/v1/services/` is the list, as `/v1/services`, not a service with an empty name.
    routerOptions: { ignoreTrailingSlash: true },
    frameworkErrors: routingError,
    clientErrorHandler: clientError,
    // Refused below instead, in the API's error shape.
    return503OnClosing: false,
    ajv: { customOptions: AJV_OPTIONS, plugins: [addRecordFormats] },
    // The response serializer checks anyOf branches with an Ajv of its own: known to it, the
    // address format is not reported ("unknown format … ignored") on stderr, outside the JSON log.
    serializerOpts: { ajv: { formats: { [ADDRESS_FORMAT]: true } } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.decorateRequest("change", null);

  // Shutting down: a request that arrives on a kept-alive connection is refused (503, and the
  // connection closed) so the client retries elsewhere; requests already running finish, and
  // their connections close after the answer. Node closes the connections still idle when the
  // server closes: a client sending its next request on one right then gets a reset, which says
  // nothing about whether a PUT was stored. So closing waits CLOSE_DRAIN_MS first, for clients
  // in the middle of sending to get their 503 (64 keep-alive writers: 2–15 resets a SIGTERM).
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
    await new Promise((resolve) => setTimeout(resolve, CLOSE_DRAIN_MS));
  });
  // Callback hooks: they run on every request, and an async one costs a promise each time.
  app.addHook("onRequest", (_request, _reply, done) => {
    done(closing ? new ApiError(503, "shutting_down", "the API is shutting down; retry") : undefined);
  });
  app.addHook("onSend", (_request, reply, payload, done) => {
    if (closing) void reply.header("connection", "close");
    done(null, payload);
  });

  // A DELETE carries no body, so its Content-Type says nothing (curl -X DELETE -d '' sends a form
  // type): without a body to parse, it is not refused as unsupported media.
  app.addHook("onRequest", (request, _reply, done) => {
    const { headers } = request;
    if (request.method === "DELETE" && headers["transfer-encoding"] === undefined && (headers["content-length"] ?? "0") === "0") delete headers["content-type"];
    done();
  });

  // Records are JSON only: anything else is 415, not a confusing validation error.
  app.removeContentTypeParser("text/plain");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    try {
      const encoding = request.headers["content-encoding"]?.trim().toLowerCase();
      if (encoding !== undefined && encoding !== "" && encoding !== "identity") {
        throw new ApiError(415, "unsupported_media_type", `Content-Encoding: ${encoding} is not supported: send the record uncompressed`);
      }
      done(null, parseJsonBody(request.headers["content-type"], request.method, body as string));
    } catch (error) {
      done(error as ApiError, undefined);
    }
  });

  const tokens = options.tokens;
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Envoyage API",
        version: "1.0.0",
        description: "Register services (domains → upstream endpoints); every Envoy connected to Envoyage routes them within milliseconds.",
      },
      ...(tokens && { components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } } }),
    },
    // The /v1 routes, when API_TOKENS_FILE is set; the probes, /metrics and this document stay open.
    transform: ({ schema, url }) => ({
      schema: tokens && url.startsWith("/v1/") ? { ...schema, security: [{ bearer: [] }], response: { ...(schema?.response as object | undefined), 401: ErrorBody } } : schema,
      url,
    }),
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const apiError = toApiError(error, request, options.bodyLimit);
    // NATS down or a full bucket: the operator's to fix, logged without a stack; anything else ≥ 500 is a bug.
    if (apiError.status === 503 || apiError.status === 507) request.log.warn(apiError.message);
    else if (apiError.status >= 500) request.log.error({ err: error }, apiError.message);
    // A 503 passes (NATS back, a leader elected, another API instance): clients that honour
    // Retry-After come back after a second rather than at once or never.
    if (apiError.status === 503) void reply.header("retry-after", RETRY_AFTER_SECONDS);
    void reply.status(apiError.status).send(apiError.body());
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send(new ApiError(404, "not_found", `no route for ${request.method} ${request.url}`).body());
  });

  // Unencapsulated, so its onResponse hook sees every route.
  await app.register(fastifyPlugin(metricsPlugin), { ready: () => options.registry.ready });
  await app.register(healthRoutes, { registry: options.registry });
  await app.register(async (v1) => {
    if (tokens) v1.addHook("onRequest", requireBearerToken(tokens));
    await v1.register(serviceRoutes, { registry: options.registry, status: options.status });
    await v1.register(envoyRoutes, { registry: options.registry, status: options.status });
  });
  app.get("/openapi.json", { schema: { hide: true } }, () => app.swagger());
  return app;
}
export type App = Awaited<ReturnType<typeof buildApp>>;
