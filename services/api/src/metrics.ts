// Prometheus metrics of the API (GET /metrics): requests and latencies by route and status,
// readiness, and the process's own metrics.
import type { FastifyPluginAsync } from "fastify";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export const metricsPlugin: FastifyPluginAsync<{ ready: () => boolean }> = async (app, { ready }) => {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: "envoyage_api_requests_total",
    help: "HTTP requests, by method, route and status.",
    labelNames: ["method", "route", "status"],
    registers,
  });
  const latency = new Histogram({
    name: "envoyage_api_request_duration_seconds",
    help: "HTTP request latency, by method and route.",
    labelNames: ["method", "route"],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  new Gauge({
    name: "envoyage_api_ready",
    help: "1 while ready (/readyz): connected to NATS, the bucket bound, and the registry loaded into the view that checks domain claims.",
    registers,
    collect() {
      this.set(ready() ? 1 : 0);
    },
  });

  app.addHook("onResponse", async (request, reply) => {
    // The route pattern, not the URL, so service names do not explode the label set.
    const route = request.routeOptions.url ?? "unmatched";
    requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    latency.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });
  const exposition = { description: "Prometheus text exposition format.", content: { [registry.contentType]: { schema: { type: "string" } } } };
  app.get("/metrics", { schema: { summary: "Prometheus metrics", tags: ["probes"], response: { 200: exposition } } }, async (_request, reply) =>
    reply.header("content-type", registry.contentType).send(await registry.metrics()),
  );
};
