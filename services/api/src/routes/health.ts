// Probes: /healthz while the process runs, /readyz while NATS is connected, the bucket bound and its view loaded.
import type { FastifyPluginAsync } from "fastify";
import type { RegistryAccess } from "../registry-access.js";

export const healthRoutes: FastifyPluginAsync<{ registry: RegistryAccess }> = async (app, { registry }) => {
  app.get("/healthz", { schema: { hide: true } }, () => ({ status: "ok" }));
  app.get("/readyz", { schema: { hide: true } }, (_request, reply) =>
    registry.ready
      ? { status: "ready" }
      : reply.status(503).send({ error: { code: "registry_unavailable", message: "not connected to NATS and the bucket, or still loading it" } }),
  );
};
