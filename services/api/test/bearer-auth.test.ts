// API_TOKENS_FILE: /v1 takes requests that carry one of the file's tokens, against a real
// nats-server; the probes, /metrics and /openapi.json stay open.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { validate } from "@readme/openapi-parser";
import { pino } from "pino";
import { ConfigError } from "@envoyage/registry";
import { startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import { loadConfig } from "../src/config.js";
import { startServer, type RunningApi } from "../src/server.js";

const CURRENT = "current-token-0123456789abcdef";
const NEXT = "next-token-0123456789abcdef";
const web = { domains: ["web.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] };

async function tokensFile(content: string): Promise<string> {
  const file = join(await mkdtemp(join(tmpdir(), "envoyage-tokens-")), "tokens");
  await writeFile(file, content);
  return file;
}

describe("API_TOKENS_FILE", () => {
  let nats: NatsServer;
  let api: RunningApi;
  let base: string;
  let file: string;
  let log = "";

  before(async () => {
    nats = await startNats();
    // Rotation: the current token and the next one, both taken.
    file = await tokensFile(`# clients of the registry\n${CURRENT}\n\n${NEXT}\n`);
    const config = loadConfig({ NATS_URL: nats.url, API_HOST: "127.0.0.1", API_PORT: "0", API_TOKENS_FILE: file });
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => done(void (log += chunk.toString())) });
    api = await startServer(config, pino({ level: "info" }, sink));
    base = `http://127.0.0.1:${api.port}`;
    await api.loaded;
  });

  after(async () => {
    await api?.close();
    await nats?.stop();
  });

  const call = async (method: string, path: string, authorization?: string, body?: unknown) => {
    const headers: Record<string, string> = authorization ? { authorization } : {};
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text.startsWith("{") ? JSON.parse(text) : text };
  };

  it("refuses /v1 without a token, or with one it does not take, with 401 and what to send", async () => {
    for (const [method, path] of [["GET", "/v1/services"], ["PUT", "/v1/services/web"], ["DELETE", "/v1/services/web"], ["GET", "/v1/envoys"]] as const) {
      const missing = await call(method, path, undefined, method === "PUT" ? web : undefined);
      assert.equal(missing.status, 401, `${method} ${path}`);
      assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="envoyage"');
      assert.deepEqual(missing.body.error, { code: "unauthorized", message: "this API takes requests with Authorization: Bearer <token> (API_TOKENS_FILE)" });
    }
    for (const authorization of ["Bearer not-a-token-of-this-api", `Basic ${CURRENT}`, `Bearer ${CURRENT.slice(0, -1)}`]) {
      const refused = await call("PUT", "/v1/services/web", authorization, web);
      assert.equal(refused.status, 401, authorization);
    }
    assert.equal((await call("PUT", "/v1/services/web", "Bearer wrong-token-0123456789", web)).body.error.message, "the bearer token is not one this API takes (API_TOKENS_FILE)");
    assert.equal((await call("GET", "/v1/services/web", `Bearer ${CURRENT}`)).status, 404, "nothing was written");
  });

  it("takes every token of the file, and logs none of them", async () => {
    assert.equal((await call("PUT", "/v1/services/web", `Bearer ${CURRENT}`, web)).status, 201);
    assert.equal((await call("GET", "/v1/services/web", `bearer ${NEXT}`)).status, 200, "the scheme is case-insensitive");
    assert.equal((await call("DELETE", "/v1/services/web", `Bearer ${NEXT}`)).status, 204);
    assert.doesNotMatch(log, new RegExp(`${CURRENT}|${NEXT}`));
  });

  it("takes the file's new tokens without a restart, and keeps them when a rewrite breaks it", async () => {
    const THIRD = "third-token-0123456789abcdef";
    await writeFile(file, `${NEXT}\n${THIRD}\n`); // the rotation's last step: CURRENT removed
    await waitFor("the new tokens", async () => ((await call("GET", "/v1/services", `Bearer ${THIRD}`)).status === 200 ? true : undefined), { timeoutMs: 5_000 });
    assert.equal((await call("GET", "/v1/services", `Bearer ${CURRENT}`)).status, 401);
    assert.match(log, /"tokens":2,"msg":"API_TOKENS_FILE changed: taking its tokens"/);

    await writeFile(file, "short\n");
    await waitFor("the refusal of the broken file", () => (log.includes("API_TOKENS_FILE changed but cannot be used") ? true : undefined), { timeoutMs: 5_000 });
    assert.match(log, /"reason":"API_TOKENS_FILE \([^)]*\): token 1 is shorter than 16 characters"/);
    assert.equal((await call("GET", "/v1/services", `Bearer ${THIRD}`)).status, 200, "the tokens that worked still do");
  });

  it("keeps the probes, /metrics and /openapi.json open, and documents the bearer scheme on /v1", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics", "/openapi.json"]) assert.equal((await call("GET", path)).status, 200, path);
    const document = (await call("GET", "/openapi.json")).body;
    assert.deepEqual(document.components.securitySchemes, { bearer: { type: "http", scheme: "bearer" } });
    assert.deepEqual(document.paths["/v1/services/{name}"].put.security, [{ bearer: [] }]);
    assert.ok(document.paths["/v1/envoys"].get.responses["401"], "the 401 is documented");
    assert.equal(document.paths["/healthz"].get.security, undefined);
    assert.deepEqual(await validate(document), { valid: true, warnings: [], specification: "OpenAPI" });
  });
});

describe("API_TOKENS_FILE, refused at start", () => {
  it("names a file without tokens, a short token, and a line holding two", async () => {
    const refusals: [string, RegExp][] = [
      ["# only a comment\n\n", /holds no token: one per line/],
      [`${CURRENT}\nshort\n`, /token 2 is shorter than 16 characters/],
      [`${CURRENT} ${NEXT}\n`, /a token holds a space; one token per line/],
    ];
    for (const [content, refusal] of refusals) {
      const file = await tokensFile(content);
      assert.throws(() => loadConfig({ API_TOKENS_FILE: file }), (error: unknown) => error instanceof ConfigError && refusal.test(error.message), content);
    }
    assert.throws(() => loadConfig({ API_TOKENS_FILE: "/nonexistent/tokens" }), /API_TOKENS_FILE names a file this process cannot read/);
  });
});
