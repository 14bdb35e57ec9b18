// A bucket made by hand with tighter limits than the API's own: a write it refuses answers 413
// (a value over its max value size) or 507 (no room left), with NATS's reason — not a 503 that
// tells the client to retry what can never succeed — and nothing is left half written.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { createLogger } from "@envoyage/registry";
import { startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import { loadConfig } from "../src/config.js";
import { startServer, type RunningApi } from "../src/server.js";

let nats: NatsServer;
let nc: NatsConnection;
const apis: RunningApi[] = [];

const record = (domains: string[]) => ({ domains, endpoints: [{ address: "127.0.0.1", port: 5678 }] });

/** An API on `bucket`, which the test created beforehand (on `natsUrl`, the test's nats-server unless given). */
async function apiOn(bucket: string, natsUrl = nats.url): Promise<(method: string, path: string, body?: unknown) => Promise<{ status: number; body: any }>> {
  const api = await startServer(loadConfig({ NATS_URL: natsUrl, API_HOST: "127.0.0.1", API_PORT: "0", ENVOYAGE_BUCKET: bucket }), createLogger("api", "silent"));
  apis.push(api);
  await api.bound;
  await waitFor("the API to be ready", async () => ((await fetch(`http://127.0.0.1:${api.port}/readyz`)).ok ? true : undefined));
  return async (method, path, body) => {
    const response = await fetch(`http://127.0.0.1:${api.port}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  };
}

before(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
});

after(async () => {
  for (const api of apis) await api.close();
  await nc?.close();
  await nats?.stop();
});

describe("a bucket with tighter limits than the API's", () => {
  it("answers 413 value_too_large for a record over its max value size, and writes nothing", async () => {
    await new Kvm(nc).create("tight-values", { history: 10, maxValueSize: 400 });
    const call = await apiOn("tight-values");
    assert.equal((await call("PUT", "/v1/services/small", record(["small.example.com"]))).status, 201);
    const domains = Array.from({ length: 20 }, (_, i) => `d${i}.example.com`);
    const refused = await call("PUT", "/v1/services/big", record(domains));
    assert.equal(refused.status, 413);
    assert.equal(refused.body.error.code, "value_too_large");
    assert.match(refused.body.error.message, /max value size.*message size exceeds maximum allowed/);
    assert.equal((await call("GET", "/v1/services/big")).status, 404);
    const kv = await new Kvm(nc).open("tight-values");
    await waitFor("its claims to be given back", async () => ((await kv.get("domains.d0.example.com"))?.operation === "PUT" ? undefined : true));
  });

  it("answers 507 registry_full once the bucket has no room left, and serves what it holds", async () => {
    await new Kvm(nc).create("tight-bytes", { history: 1, max_bytes: 2048 });
    const call = await apiOn("tight-bytes");
    let full: { status: number; body: any } | undefined;
    for (let i = 0; i < 50 && !full; i++) {
      const answer = await call("PUT", `/v1/services/s${i}`, record([`s${i}.example.com`]));
      if (answer.status !== 201) full = answer;
    }
    assert.ok(full, "the bucket never filled up");
    assert.equal(full.status, 507, JSON.stringify(full.body));
    assert.equal(full.body.error.code, "registry_full");
    assert.match(full.body.error.message, /a delete included.*maximum bytes exceeded.*raise the bucket's or the account's limits, or purge/);
    assert.equal((await call("GET", "/v1/services/s0")).status, 200);
  });
});

describe("a NATS server whose max_payload is below the API's body limit", () => {
  it("answers 413 value_too_large for a record it would not take, and writes nothing", async () => {
    const small = await startNats({ config: "max_payload: 2048" });
    try {
      const call = await apiOn("envoyage", small.url);
      const endpoints = Array.from({ length: 100 }, (_, i) => ({ address: "127.0.0.1", port: 10_000 + i }));
      const refused = await call("PUT", "/v1/services/big", { domains: ["big.example.com"], endpoints });
      assert.equal(refused.status, 413, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, "value_too_large");
      assert.match(refused.body.error.message, /max_payload/);
      assert.equal((await call("GET", "/v1/services/big")).status, 404);
      assert.equal((await call("PUT", "/v1/services/small", record(["small.example.com"]))).status, 201);
    } finally {
      for (const api of apis.splice(-1)) await api.close();
      await small.stop();
    }
  });
});
