// Probes: /healthz while the process runs, /readyz while NATS is connected, the bucket bound and its view loaded.
import type { FastifyPluginAsync } from "fastify";
import { Type } from "typebox";
import { unavailable } from "../errors.js";
import type { RegistryAccess } from "../registry-access.js";
import { ErrorBody } from "./schemas.js";

const probe = (state: string, description: string) =>
  Type.Object({ status: Type.Literal(state) }, { description, additionalProperties: false });

export const healthRoutes: FastifyPluginAsync<{ registry: RegistryAccess }> = async (app, { registry }) => {
  app.get(
    "/healthz",
    {
      schema: {
        summary: "Liveness: the process runs (503 shutting_down once it is stopping)",
        tags: ["probes"],
        response: { 200: probe("ok", "Running."), 503: ErrorBody },
      },
    },
    () => ({ status: "ok" }),
  );
  app.get(
    "/readyz",
    {
      schema: {
        summary: "Readiness: connected to NATS, the bucket bound and loaded (503 registry_unavailable or shutting_down otherwise)",
        tags: ["probes"],
        response: {
          200: probe("ready", "Ready to take writes (one can still get 503 while JetStream cannot store it)."),
          503: ErrorBody,
        },
      },
    },
    (_request, reply) =>
      registry.ready
        ? { status: "ready" }
        : reply.status(503).send(unavailable("not connected to NATS and the bucket, or still loading it").body()),
  );
};
