// GET /v1/envoys: every Envoy the replicas know, with its sync state, like istioctl proxy-status.
//   SYNCED        holds everything written to the bucket so far
//   STALE         connected, but an update has not reached it (or is still in flight)
//   NACKED        rejected the latest update of some type (see types.<T>.nacked.error)
//   DISCONNECTED  seen recently, no stream open on any replica
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { RegistryAccess } from "../registry-access.js";
import type { StatusView } from "../status-view.js";
import { EnvoyList, ErrorBody, NoQuery } from "./schemas.js";
import { methodNotAllowed } from "./method-not-allowed.js";

export const envoyRoutes: FastifyPluginAsyncTypebox<{ registry: RegistryAccess; status: StatusView }> = async (app, { registry, status }) => {
  app.get(
    "/v1/envoys",
    { schema: { summary: "List Envoys and their sync status", querystring: NoQuery, response: { 200: EnvoyList, 400: ErrorBody, 503: ErrorBody } } },
    async () => {
      const revision = await registry.run((store) => store.revision());
      return { revision, envoys: status.envoys(revision) };
    },
  );
  app.route(methodNotAllowed("/v1/envoys", ["GET"]));
};
