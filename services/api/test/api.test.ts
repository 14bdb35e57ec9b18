// The HTTP contract (DESIGN.md) against a real nats-server.
import assert from "node:assert/strict";
import { connect as connectSocket } from "node:net";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { validate } from "@readme/openapi-parser";
import { pino } from "pino";
import { createLogger } from "@envoyage/registry";
import { sleep, startNats, waitFor, type NatsServer } from "@envoyage/test-support";
import { loadConfig } from "../src/config.js";
import { startServer, type RunningApi } from "../src/server.js";

let nats: NatsServer;
let api: RunningApi;
let base: string;

const web = { domains: ["web.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] };

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] ??= "application/json";
  }
  const response = await fetch(`${base}${path}`, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

async function kvValue(key: string): Promise<string | undefined> {
  const nc = await connect({ servers: nats.url });
  try {
    const entry = await (await new Kvm(nc).open("envoyage")).get(key);
    return entry?.operation === "PUT" ? entry.string() : undefined;
  } finally {
    await nc.close();
  }
}

before(async () => {
  nats = await startNats();
  const config = loadConfig({ NATS_URL: nats.url, API_HOST: "127.0.0.1", API_PORT: "0", API_BODY_LIMIT: "4096" });
  api = await startServer(config, createLogger("api", "silent"));
  base = `http://127.0.0.1:${api.port}`;
  // Writes answer 503 "still loading" until the registry view has loaded the bucket.
  await api.loaded;
});

after(async () => {
  await api?.close();
  await nats?.stop();
});

describe("PUT, GET, list and DELETE", () => {
  it("creates (201), reads back with an ETag, replaces (200), lists and deletes (204)", async () => {
    const created = await call("PUT", "/v1/services/web", web);
    assert.equal(created.status, 201);
    assert.deepEqual(created.body, { name: "web", revision: created.body.revision, ...web });
    assert.equal(created.headers.get("etag"), `"${created.body.revision}"`);
    assert.equal(created.headers.get("location"), "/v1/services/web");

    const read = await call("GET", "/v1/services/web");
    assert.equal(read.status, 200);
    const { status, ...record } = read.body;
    assert.deepEqual(record, created.body);
    // No replica runs in this test: nothing has applied the revision, no Envoy holds it.
    assert.deepEqual(status, { state: "pending", envoys: { connected: 0, acked: 0 } });
    assert.equal(read.headers.get("etag"), `"${created.body.revision}"`);

    const switched = { ...web, endpoints: [{ address: "127.0.0.1", port: 5679 }] };
    const replaced = await call("PUT", "/v1/services/web", switched);
    assert.equal(replaced.status, 200);
    assert.ok(replaced.body.revision > created.body.revision);
    assert.equal(replaced.headers.get("location"), null, "only a creation names where the service now is");

    const list = await call("GET", "/v1/services");
    assert.equal(list.status, 200);
    const { status: _status, ...listed } = list.body.services.find((s: { name: string }) => s.name === "web");
    assert.deepEqual(listed, { name: "web", revision: replaced.body.revision, ...switched });
    assert.deepEqual((await call("GET", "/v1/services/")).body, list.body, "a trailing slash lists too");
    assert.equal((await call("GET", "/v1/services/web/")).body.revision, replaced.body.revision);

    assert.equal((await call("DELETE", "/v1/services/web")).status, 204);
    assert.equal((await call("GET", "/v1/services/web")).status, 404);
    assert.equal((await call("DELETE", "/v1/services/web")).status, 404);
  });

  it("stores the canonical record at services.<name> and the claim at domains.<domain>", async () => {
    await call("PUT", "/v1/services/kvlayout", { endpoints: [{ port: 80, address: "10.0.0.1" }], domains: ["*.kv.example.com"] });
    assert.equal(await kvValue("services.kvlayout"), '{"domains":["*.kv.example.com"],"endpoints":[{"address":"10.0.0.1","port":80}]}');
    assert.equal(await kvValue("domains._.kv.example.com"), "kvlayout");
    await call("DELETE", "/v1/services/kvlayout");
    assert.equal(await kvValue("domains._.kv.example.com"), undefined, "deleting a service releases its claims");
  });

  it("answers 404 with a JSON error for an unknown service", async () => {
    const response = await call("GET", "/v1/services/nope");
    assert.equal(response.status, 404);
    assert.equal(response.body.error.code, "not_found");
    assert.match(response.body.error.message, /nope/);
  });
});

describe("validation", () => {
  const cases: [string, unknown, string, string][] = [
    ["a port out of range", { ...web, endpoints: [{ address: "a", port: 70000 }] }, "invalid_record", "/endpoints/0/port"],
    ["an unknown field", { ...web, weight: 1 }, "invalid_record", "/weight"],
    ["no domains", { ...web, domains: [] }, "invalid_record", "/domains"],
    ["a bad address", { ...web, endpoints: [{ address: "not valid", port: 1 }] }, "invalid_record", "/endpoints/0/address"],
    ["a port as a string", { ...web, endpoints: [{ address: "a", port: "80" }] }, "invalid_record", "/endpoints/0/port"],
  ];
  for (const [what, body, code, field] of cases) {
    it(`rejects ${what} with 400 naming ${field}`, async () => {
      const response = await call("PUT", "/v1/services/bad", body);
      assert.equal(response.status, 400);
      assert.equal(response.body.error.code, code);
      assert.equal(response.body.error.field, field);
      assert.match(response.body.error.message, new RegExp(field.replace(/\//g, "\\/")));
    });
  }

  it("rejects a service name that is not a DNS label", async () => {
    const response = await call("PUT", "/v1/services/Bad_Name", web);
    assert.equal(response.status, 400);
    assert.equal(response.body.error.code, "invalid_name");
  });

  it("rejects malformed JSON, other media types and oversized bodies", async () => {
    const malformed = await call("PUT", "/v1/services/x", '{"domains":');
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.error.code, "invalid_json");
    assert.match(malformed.body.error.message, /^the body is not valid JSON: .+/);
    const poisoned = await call("PUT", "/v1/services/x", `{"__proto__":{"a":1},${JSON.stringify(web).slice(1)}`);
    assert.deepEqual([poisoned.status, poisoned.body.error.code], [400, "invalid_json"]);
    assert.match(poisoned.body.error.message, /"__proto__".*prototype poisoning/);
    const text = await call("PUT", "/v1/services/x", "hello", { "content-type": "text/plain" });
    assert.equal(text.status, 415);
    assert.equal(text.body.error.code, "unsupported_media_type");
    const latin1 = await call("PUT", "/v1/services/x", JSON.stringify(web), { "content-type": "application/json; charset=ISO-8859-1" });
    assert.equal(latin1.status, 415);
    assert.equal(latin1.body.error.code, "unsupported_media_type");
    assert.match(latin1.body.error.message, /charset=iso-8859-1/);
    const twice = await call("PUT", "/v1/services/x", JSON.stringify(web), { "content-type": "application/json; charset=utf-8; charset=latin1" });
    assert.equal(twice.status, 415, "every charset parameter counts, not the first only");
    const utf8 = await call("PUT", "/v1/services/x", JSON.stringify({ ...web, domains: ["x.example.com"] }), { "content-type": 'application/json; Charset="UTF-8"' });
    assert.equal(utf8.status, 201, "UTF-8, however it is spelled, is JSON's own charset");
    assert.equal((await call("DELETE", "/v1/services/x")).status, 204);
    const endpoints = Array.from({ length: 200 }, (_, i) => ({ address: "10.0.0.1", port: 1000 + i }));
    const huge = await call("PUT", "/v1/services/x", { ...web, endpoints }); // 7 KB, over the 4 KB limit set above
    assert.equal(huge.status, 413);
    assert.equal(huge.body.error.code, "body_too_large");
    assert.match(huge.body.error.message, /over the API's limit of 4096 bytes \(API_BODY_LIMIT\)/);
    assert.equal((await call("GET", "/v1/services/x")).status, 404, "nothing was written");
    const empty = await call("PUT", "/v1/services/x", "");
    assert.equal(empty.status, 400);
    assert.equal(empty.body.error.code, "invalid_json");
    assert.match(empty.body.error.message, /the body is empty/);
    const none = await call("PUT", "/v1/services/x");
    assert.deepEqual([none.status, none.body.error.code], [400, "invalid_json"]);
    assert.match(none.body.error.message, /no body/);
  });

  it("refuses what no route sees in the API's own error shape: broken URLs, long names, bad HTTP, huge headers", async () => {
    const long = await call("GET", `/v1/services/${"a".repeat(101)}`); // past the router's limit: Fastify answered 414 in its shape
    assert.deepEqual([long.status, long.body.error.code], [400, "invalid_name"]);
    const broken = await call("GET", "/v1/services/%E0%A4%A");
    assert.deepEqual([broken.status, broken.body.error.code], [400, "invalid_url"]);
    /** A raw request, and the status line and JSON body of what comes back. */
    const raw = (request: string) =>
      new Promise<{ statusLine: string; body: { error: { code: string; message: string } } }>((resolve, reject) => {
        const socket = connectSocket(api.port, "127.0.0.1", () => socket.end(request));
        let received = "";
        socket.on("data", (chunk) => (received += chunk.toString()));
        socket.on("error", reject);
        socket.on("close", () => {
          const [head, body] = received.split("\r\n\r\n");
          resolve({ statusLine: head!.split("\r\n")[0]!, body: JSON.parse(body!) });
        });
      });
    const garbage = await raw("PUT /v1/services/x HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n{}");
    assert.equal(garbage.statusLine, "HTTP/1.1 400 Bad Request");
    assert.equal(garbage.body.error.code, "bad_request");
    assert.match(garbage.body.error.message, /not valid HTTP\/1\.1/);
    const headers = await raw(`GET /v1/services HTTP/1.1\r\nHost: a\r\nX-Big: ${"x".repeat(20_000)}\r\n\r\n`);
    assert.equal(headers.statusLine, "HTTP/1.1 431 Request Header Fields Too Large");
    assert.equal(headers.body.error.code, "headers_too_large");
  });

  it("refuses query parameters a request does not take, instead of ignoring them (?dryRun=true wrote)", async () => {
    const dry = await call("PUT", "/v1/services/q1?dryRun=true", { ...web, domains: ["q1.example.com"] });
    assert.deepEqual([dry.status, dry.body.error.code, dry.body.error.field], [400, "invalid_query", "dryRun"]);
    assert.equal((await call("GET", "/v1/services/q1")).status, 404, "nothing was written");
    assert.equal((await call("PUT", "/v1/services/q1", { ...web, domains: ["q1.example.com"] })).status, 201);
    for (const [method, path] of [["GET", "/v1/services/q1?x=1"], ["DELETE", "/v1/services/q1?dryRun=true"], ["GET", "/v1/envoys?node=a"]] as const) {
      const refused = await call(method, path);
      assert.deepEqual([refused.status, refused.body.error.code], [400, "invalid_query"], `${method} ${path}`);
      assert.match(refused.body.error.message, /is not a parameter this request takes/);
    }
    assert.equal((await call("GET", "/v1/services/q1")).status, 200, "the DELETE deleted nothing");
    const twice = await call("GET", "/v1/services?limit=1&limit=2");
    assert.equal(twice.status, 400);
    assert.equal(twice.body.error.message, 'query parameter "limit" is given more than once');
    assert.equal((await call("DELETE", "/v1/services/q1")).status, 204);
  });

  it("says what to drop from a record read back and written again, and refuses a compressed body", async () => {
    assert.equal((await call("PUT", "/v1/services/rt", { ...web, domains: ["rt.example.com"] })).status, 201);
    const read = (await call("GET", "/v1/services/rt")).body;
    const again = await call("PUT", "/v1/services/rt", read);
    assert.deepEqual([again.status, again.body.error.code, again.body.error.field], [400, "invalid_record", "/name"]);
    assert.match(again.body.error.message, /drop name, revision, status and problem/);
    const gzipped = await call("PUT", "/v1/services/rt", JSON.stringify(web), { "content-encoding": "gzip" });
    assert.deepEqual([gzipped.status, gzipped.body.error.code], [415, "unsupported_media_type"]);
    assert.match(gzipped.body.error.message, /Content-Encoding: gzip is not supported/);
    assert.equal((await call("DELETE", "/v1/services/rt")).status, 204);
  });

  it("deletes when the client labels the empty body of a DELETE as JSON, or as anything else", async () => {
    for (const type of ["application/json", "application/x-www-form-urlencoded", "text/plain"]) {
      assert.equal((await call("PUT", "/v1/services/labelled", { domains: ["labelled.example.com"], endpoints: web.endpoints })).status, 201);
      const deleted = await call("DELETE", "/v1/services/labelled", undefined, { "content-type": type });
      assert.equal(deleted.status, 204, type);
      assert.equal((await call("GET", "/v1/services/labelled")).status, 404);
    }
  });

  it("takes a body that starts with a byte order mark, as NATS's KV decoding does", async () => {
    const created = await call("PUT", "/v1/services/bom", `\uFEFF${JSON.stringify({ ...web, domains: ["bom.example.com"] })}`);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((await call("DELETE", "/v1/services/bom")).status, 204);
  });
});

describe("If-Match", () => {
  it("updates when the revision matches and answers 412 when it does not", async () => {
    const created = await call("PUT", "/v1/services/cas", { ...web, domains: ["cas.example.com"] });
    const etag = created.headers.get("etag")!;
    const updated = await call("PUT", "/v1/services/cas", { ...web, domains: ["cas.example.com"] }, { "if-match": etag });
    assert.equal(updated.status, 200);

    const stale = await call("PUT", "/v1/services/cas", { ...web, domains: ["cas.example.com"] }, { "if-match": etag });
    assert.equal(stale.status, 412);
    assert.equal(stale.body.error.code, "revision_mismatch");
    assert.equal(stale.body.error.currentRevision, updated.body.revision);

    const staleDelete = await call("DELETE", "/v1/services/cas", undefined, { "if-match": etag });
    assert.equal(staleDelete.status, 412);
    assert.equal((await call("DELETE", "/v1/services/cas", undefined, { "if-match": `"${updated.body.revision}"` })).status, 204);
  });

  it("takes a list of revisions (RFC 9110: any of them matches)", async () => {
    const body = { ...web, domains: ["list.example.com"] };
    const created = await call("PUT", "/v1/services/listed", body);
    const others = `"${created.body.revision + 100}", "${created.body.revision + 101}"`;
    const refused = await call("PUT", "/v1/services/listed", body, { "if-match": others });
    assert.equal(refused.status, 412);
    assert.match(refused.body.error.message, /expected one of revisions \d+, \d+, but the stored revision is \d+/);
    const matched = await call("PUT", "/v1/services/listed", body, { "if-match": `${others}, "${created.body.revision}"` });
    assert.equal(matched.status, 200);
    assert.equal((await call("DELETE", "/v1/services/listed", undefined, { "if-match": `"1", "${matched.body.revision}"` })).status, 204);
    assert.equal((await call("PUT", "/v1/services/listed", body, { "if-match": '"3", *' })).status, 400, "* stands alone");
    const again = await call("PUT", "/v1/services/listed", body);
    assert.equal((await call("PUT", "/v1/services/listed", body, { "if-match": `"${again.body.revision}",` })).status, 200, "empty list elements are ignored");
    assert.equal((await call("PUT", "/v1/services/listed", body, { "if-match": " , " })).status, 400, "a list of nothing is no precondition");
    assert.equal((await call("DELETE", "/v1/services/listed")).status, 204);
  });

  it("answers 412 for If-Match on a service that does not exist, and 400 for a malformed one", async () => {
    assert.equal((await call("PUT", "/v1/services/ghost", web, { "if-match": '"3"' })).status, 412);
    assert.equal((await call("PUT", "/v1/services/ghost", web, { "if-match": "*" })).status, 412);
    const malformed = await call("PUT", "/v1/services/ghost", web, { "if-match": "yesterday" });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.error.code, "invalid_if_match");
    const weak = await call("PUT", "/v1/services/ghost", web, { "if-match": 'W/"3"' });
    assert.equal(weak.status, 400, "a weak ETag never matches If-Match");
    assert.equal(weak.body.error.code, "invalid_if_match");
    assert.equal((await call("GET", "/v1/services/ghost")).status, 404, "nothing was written");
  });

  it("creates only what does not exist with If-None-Match: *, and refuses other forms", async () => {
    const body = { ...web, domains: ["once.example.com"] };
    const created = await call("PUT", "/v1/services/once", body, { "if-none-match": "*" });
    assert.equal(created.status, 201);
    const again = await call("PUT", "/v1/services/once", body, { "if-none-match": "*" });
    assert.equal(again.status, 412);
    assert.equal(again.body.error.code, "revision_mismatch");
    assert.equal(again.body.error.currentRevision, created.body.revision);
    assert.equal((await call("PUT", "/v1/services/once", body, { "if-none-match": '"3"' })).body.error.code, "invalid_if_none_match");
    const both = await call("PUT", "/v1/services/once", body, { "if-none-match": "*", "if-match": "*" });
    assert.equal(both.status, 400);
    assert.equal((await call("GET", "/v1/services/once")).body.revision, created.body.revision, "nothing was written");
    for (const header of ["*", `"${created.body.revision}"`]) {
      const refused = await call("DELETE", "/v1/services/once", undefined, { "if-none-match": header });
      assert.deepEqual([refused.status, refused.body.error.code], [400, "invalid_if_none_match"], `DELETE with If-None-Match: ${header}`);
    }
    assert.equal((await call("GET", "/v1/services/once")).status, 200, "nothing was deleted");
  });
});

describe("methods", () => {
  it("answers 405 with Allow for a known path asked with a method it does not have, and OPTIONS with Allow", async () => {
    const post = await call("POST", "/v1/services/web", web);
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, PUT, DELETE, HEAD, OPTIONS");
    assert.equal(post.body.error.code, "method_not_allowed");
    const putList = await call("PUT", "/v1/services", web);
    assert.equal(putList.status, 405);
    assert.equal(putList.headers.get("allow"), "GET, HEAD, OPTIONS");
    // A script whose service name came out empty is told where services are written.
    const emptyName = await call("DELETE", "/v1/services/");
    assert.equal(emptyName.status, 405);
    assert.match(emptyName.body.error.message, /DELETE is not allowed on \/v1\/services; .*written and deleted at \/v1\/services\/\{name\}/);
    // Decided before the body is read: a form body is not a 415 here.
    const form = await call("POST", "/v1/services/web", "a=b", { "content-type": "application/x-www-form-urlencoded" });
    assert.equal(form.status, 405);
    assert.equal((await call("DELETE", "/v1/envoys")).status, 405);
    const options = await call("OPTIONS", "/v1/services/web");
    assert.equal(options.status, 204);
    assert.equal(options.headers.get("allow"), "GET, PUT, DELETE, HEAD, OPTIONS");
  });
});

describe("domain claims", () => {
  it("answers 409 when another service serves the domain, and frees it when the holder lets go", async () => {
    const shared = { ...web, domains: ["shared.example.com"] };
    assert.equal((await call("PUT", "/v1/services/holder", shared)).status, 201);
    const conflict = await call("PUT", "/v1/services/taker", { ...web, domains: ["taker.example.com", "shared.example.com"] });
    assert.equal(conflict.status, 409);
    assert.deepEqual(conflict.body.error, {
      code: "domain_conflict",
      message: 'domain "shared.example.com" is held by service "holder"',
      domain: "shared.example.com",
      heldBy: "holder",
    });
    assert.equal((await call("GET", "/v1/services/taker")).status, 404, "the rejected record was not written");
    await waitFor("claims taken before the conflict to be given back", async () =>
      (await kvValue("domains.taker.example.com")) === undefined ? true : undefined,
    );

    await call("PUT", "/v1/services/holder", { ...web, domains: ["holder.example.com"] });
    assert.equal((await call("PUT", "/v1/services/taker", { ...web, domains: ["shared.example.com"] })).status, 201);
    assert.equal(await kvValue("domains.shared.example.com"), "taker");
  });

  it("answers 409 with when a pending claim lapses, for a claim whose holder's record does not list the domain", async () => {
    const nc = await connect({ servers: nats.url });
    try {
      await (await new Kvm(nc).open("envoyage")).create("domains.pending.example.com", "ghost");
    } finally {
      await nc.close();
    }
    const refused = await call("PUT", "/v1/services/taker", { ...web, domains: ["pending.example.com"] });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, "domain_conflict");
    assert.equal(refused.body.error.heldBy, "ghost");
    assert.match(refused.body.error.message, /claimed by service "ghost", whose record does not list it \(yet\)/);
    const lapsesIn = Date.parse(refused.body.error.claimLapsesAt) - Date.now();
    assert.ok(lapsesIn > 50_000 && lapsesIn <= 60_000, `claimLapsesAt ${refused.body.error.claimLapsesAt}: 60 s after the claim was written`);
  });

  it("lets exactly one of many concurrent writers claim a domain", async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => call("PUT", `/v1/services/racer${i}`, { ...web, domains: ["race.example.com"] })),
    );
    const winners = results.filter((r) => r.status === 201);
    assert.equal(winners.length, 1, `statuses: ${results.map((r) => r.status).join(",")}`);
    assert.ok(results.every((r) => r.status === 201 || r.status === 409));
    assert.equal(await kvValue("domains.race.example.com"), winners[0]!.body.name);
  });

  it("keeps every domain a record lists claimed by it when requests for the same service race", async () => {
    const record = (domain: string) => ({ ...web, domains: [domain] });
    // Each race left the record's domain unclaimed in 39–80 % of runs when claims were given
    // back by whichever request of the service failed or dropped them.
    const races: Record<string, (name: string, x: string, y: string) => Promise<unknown>> = {
      "two creates, If-None-Match: *": (name, x) =>
        Promise.all([call("PUT", `/v1/services/${name}`, record(x), { "if-none-match": "*" }), call("PUT", `/v1/services/${name}`, record(x), { "if-none-match": "*" })]),
      "a PUT dropping the domain and one listing it": async (name, x, y) => {
        await call("PUT", `/v1/services/${name}`, record(x));
        return Promise.all([call("PUT", `/v1/services/${name}`, record(y)), call("PUT", `/v1/services/${name}`, record(x))]);
      },
      "a DELETE and a PUT": async (name, x) => {
        await call("PUT", `/v1/services/${name}`, record(x));
        return Promise.all([call("DELETE", `/v1/services/${name}`), call("PUT", `/v1/services/${name}`, record(x))]);
      },
    };
    for (const [race, run] of Object.entries(races)) {
      for (let i = 0; i < 8; i++) {
        const name = `same${Object.keys(races).indexOf(race)}-${i}`;
        await run(name, `x.${name}.example.com`, `y.${name}.example.com`);
        const stored = await kvValue(`services.${name}`);
        for (const domain of stored ? (JSON.parse(stored) as { domains: string[] }).domains : []) {
          assert.equal(await kvValue(`domains.${domain}`), name, `${race}, run ${i}: ${name} lists ${domain}`);
        }
      }
    }
  });
});

describe("records written straight to NATS", () => {
  it("shows an invalid stored value with the problem instead of failing", async () => {
    const nc = await connect({ servers: nats.url });
    await (await new Kvm(nc).open("envoyage")).put("services.raw", "{not json");
    await nc.close();
    const response = await call("GET", "/v1/services/raw");
    assert.equal(response.status, 200);
    assert.equal(response.body.name, "raw");
    assert.match(response.body.problem, /not UTF-8 JSON/);
  });

  it("gives back the claims of the last good revision when a service whose latest value is invalid is replaced or deleted", async () => {
    const rawPut = async (name: string, value: string) => {
      const nc = await connect({ servers: nats.url });
      await (await new Kvm(nc).open("envoyage")).put(`services.${name}`, value);
      await nc.close();
    };
    for (const [name, replace] of [["broken-put", true], ["broken-del", false]] as const) {
      const domain = `${name}.example.com`;
      assert.equal((await call("PUT", `/v1/services/${name}`, { ...web, domains: [domain] })).status, 201);
      assert.equal(await kvValue(`domains.${domain}`), name);
      await rawPut(name, "{not json"); // the replicas keep serving the last good revision, and its claim
      if (replace) assert.equal((await call("PUT", `/v1/services/${name}`, { ...web, domains: [`other-${domain}`] })).status, 200);
      else assert.equal((await call("DELETE", `/v1/services/${name}`)).status, 204);
      assert.equal(await kvValue(`domains.${domain}`), undefined, `${replace ? "a replacement without" : "deleting"} ${name} gives ${domain} back`);
    }
  });
});

describe("OpenAPI", () => {
  it("publishes the record schema at /openapi.json", async () => {
    const response = await call("GET", "/openapi.json");
    assert.equal(response.status, 200);
    assert.equal(response.body.openapi, "3.1.0");
    const put = response.body.paths["/v1/services/{name}"].put;
    const schema = put.requestBody.content["application/json"].schema;
    assert.deepEqual(schema.required, ["domains", "endpoints"]);
    assert.equal(schema.additionalProperties, false);
    assert.ok(put.responses["409"] && put.responses["412"]);
    assert.deepEqual(Object.keys(put.responses["201"].headers), ["etag", "location"]);
    // Valid OpenAPI 3.1 as a client generator reads it, not just JSON with the right paths.
    assert.deepEqual(await validate(response.body), { valid: true, warnings: [], specification: "OpenAPI" });
    for (const probe of ["/healthz", "/readyz", "/metrics"]) assert.ok(response.body.paths[probe]?.get.summary, `${probe} is documented`);
    assert.ok(response.body.paths["/metrics"].get.responses["200"].content[(await fetch(`${base}/metrics`)).headers.get("content-type")!]);
  });
});

describe("GET /v1/envoys", () => {
  it("lists no Envoys while no replica reports, with the bucket's revision", async () => {
    const response = await call("GET", "/v1/envoys");
    assert.equal(response.status, 200);
    assert.deepEqual(response.body.envoys, []);
    assert.ok(response.body.revision > 0);
  });
});

describe("metrics", () => {
  it("counts requests by route pattern and status at /metrics", async () => {
    await call("GET", "/v1/services/nope");
    const response = await fetch(`${base}/metrics`);
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.match(text, /envoyage_api_requests_total\{method="GET",route="\/v1\/services\/:name",status="404"\} [1-9]/);
    assert.match(text, /envoyage_api_request_duration_seconds_bucket\{le="0.005",method="PUT",route="\/v1\/services\/:name"\}/);
    assert.match(text, /envoyage_api_ready 1/);
  });
});

describe("access log", () => {
  it("writes one line per request, and a write's line names the change it made", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    const config = loadConfig({ NATS_URL: nats.url, API_HOST: "127.0.0.1", API_PORT: "0" });
    const logged = await startServer(config, pino({ level: "info" }, sink));
    try {
      await logged.loaded;
      const url = `http://127.0.0.1:${logged.port}/v1/services/logged`;
      const record = { ...web, domains: ["logged.example.com"] };
      const put = await fetch(url, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(record) });
      assert.equal(put.status, 201);
      const { revision } = (await put.json()) as { revision: number };
      assert.equal((await fetch(url)).status, 200);
      assert.equal((await fetch(url, { method: "DELETE" })).status, 204);
      const ofService = () => lines.filter((line) => line["url"] === "/v1/services/logged");
      await waitFor("three access-log lines", async () => (ofService().length >= 3 ? true : undefined));
      assert.deepEqual(
        ofService().map((line) => [line["msg"], line["method"], line["status"], line["service"], line["revision"]]),
        [
          ["service created", "PUT", 201, "logged", revision],
          ["request", "GET", 200, undefined, undefined],
          ["service deleted", "DELETE", 204, "logged", undefined],
        ],
      );
      // A client that leaves before the answer: its write is logged all the same.
      const left = JSON.stringify({ ...web, domains: ["left.example.com"] });
      const socket = connectSocket(logged.port, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      const request = `PUT /v1/services/left HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(left)}\r\n\r\n${left}`;
      await new Promise((resolve) => socket.end(request, () => resolve(undefined)));
      socket.destroy();
      const leftLine = await waitFor("the write's line", async () => lines.find((line) => line["service"] === "left"));
      assert.equal(leftLine["msg"], "service created; the client left before the answer");
      assert.equal(typeof leftLine["revision"], "number");
      await sleep(200);
      assert.equal(lines.filter((line) => line["service"] === "left").length, 1, "logged once");
    } finally {
      await logged.close();
    }
  });
});

describe("NATS unavailable", () => {
  it("answers 503 within a second while NATS is down, and recovers by itself", async () => {
    await nats.kill();
    await waitFor("the API to notice", async () => ((await call("GET", "/readyz")).status === 503 ? true : undefined));
    const started = performance.now();
    const response = await call("PUT", "/v1/services/down", web);
    const elapsed = performance.now() - started;
    assert.equal(response.status, 503);
    assert.equal(response.body.error.code, "registry_unavailable");
    assert.equal(response.headers.get("retry-after"), "1");
    assert.ok(elapsed < 1000, `503 took ${elapsed.toFixed(0)} ms`);
    const list = await call("GET", "/v1/services");
    assert.equal(list.status, 503);

    await nats.restart();
    await waitFor("the API to reconnect", async () => ((await call("GET", "/readyz")).status === 200 ? true : undefined));
    assert.equal((await call("PUT", "/v1/services/down", { ...web, domains: ["down.example.com"] })).status, 201);
  });
});

describe("listing", () => {
  it("pages with limit and after, following next until the last page, and refuses a bad query (400)", async () => {
    for (const name of ["pg-1", "pg-2", "pg-3"]) assert.equal((await call("PUT", `/v1/services/${name}`, { ...web, domains: [`${name}.example.com`] })).status, 201);
    const whole = (await call("GET", "/v1/services")).body;
    assert.equal(whole.next, undefined, "no next without a limit");
    const paged: string[] = [];
    let after: string | undefined;
    for (let pages = 1; ; pages++) {
      const page = await call("GET", `/v1/services?limit=2${after ? `&after=${after}` : ""}`);
      assert.equal(page.status, 200);
      assert.ok(page.body.services.length <= 2);
      paged.push(...page.body.services.map((s: { name: string }) => s.name));
      if (page.body.next === undefined) break;
      assert.equal(page.body.next, paged.at(-1));
      after = page.body.next;
      assert.ok(pages < 100, "pages end");
    }
    assert.deepEqual(paged, whole.services.map((s: { name: string }) => s.name));
    for (const [query, field] of [["limit=0", "limit"], ["limit=ten", "limit"], ["after=Web", "after"], ["limt=2", "limt"]] as const) {
      const refused = await call("GET", `/v1/services?${query}`);
      assert.equal(refused.status, 400, query);
      assert.deepEqual([refused.body.error.code, refused.body.error.field], ["invalid_query", field], query);
      assert.match(refused.body.error.message, new RegExp(`^query parameter "${field}" `), query);
    }
  });

  it("lists from the view: polling the list leaves no consumer behind on the bucket's stream", async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      const consumers = async () => (await jsm.streams.info("KV_envoyage")).state.consumer_count;
      await call("GET", "/v1/services"); // the view is loaded by now
      const before = await consumers();
      for (let i = 0; i < 30; i++) assert.equal((await call("GET", "/v1/services")).status, 200);
      assert.ok((await consumers()) - before < 5, `${(await consumers()) - before} consumers more after 30 lists`);
    } finally {
      await nc.close();
    }
  });
});

describe("shutting down", () => {
  /** A raw connection, to control exactly what is sent when. */
  async function rawConnection(port: number) {
    const socket = connectSocket(port, "127.0.0.1");
    let received = "";
    socket.on("data", (chunk) => (received += chunk));
    await new Promise((resolve) => socket.once("connect", resolve));
    return {
      socket,
      received: () => received,
      /** Waits until `count` responses have arrived. */
      responses: (count: number) =>
        waitFor(`${count} responses`, () => {
          const statuses = [...received.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => Number(m[1]));
          return statuses.length >= count ? statuses : undefined;
        }),
    };
  }

  it("finishes a request in flight, and answers one arriving on an idle kept-alive connection with 503, not a reset", async () => {
    const config = loadConfig({ NATS_URL: nats.url, API_HOST: "127.0.0.1", API_PORT: "0" });
    const stopping = await startServer(config, createLogger("api", "silent"));
    try {
      await stopping.bound;
      // Loaded, or the PUT below is answered 503 "still loading" instead of being stored.
      await waitFor("the API to be ready", async () => ((await fetch(`http://127.0.0.1:${stopping.port}/readyz`)).status === 200 ? true : undefined));
      const idle = await rawConnection(stopping.port);
      idle.socket.write("GET /v1/services/nothing HTTP/1.1\r\nhost: x\r\n\r\n");
      assert.deepEqual(await idle.responses(1), [404]);

      // A PUT whose headers are read (its onRequest has run) and whose body is still to come.
      const inFlight = await rawConnection(stopping.port);
      const body = JSON.stringify({ ...web, domains: ["inflight.example.com"] });
      const requestSeen = new Promise((resolve) => stopping.app.server.once("request", () => setImmediate(resolve)));
      inFlight.socket.write(`PUT /v1/services/inflight HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`);
      await requestSeen;

      const closed = stopping.app.close();
      await waitFor("the API to be closing", async () => ((await fetch(`http://127.0.0.1:${stopping.port}/healthz`)).status === 503 ? true : undefined));
      idle.socket.write("GET /v1/services HTTP/1.1\r\nhost: x\r\n\r\n");
      inFlight.socket.write(body);
      assert.deepEqual(await idle.responses(2), [404, 503], idle.received());
      assert.match(idle.received(), /"code":"shutting_down"/);
      assert.match(idle.received(), /retry-after: 1/i);
      assert.deepEqual(await inFlight.responses(1), [201], inFlight.received());
      for (const connection of [idle, inFlight]) assert.match(connection.received().split("HTTP/1.1").at(-1)!, /connection: close/i);
      await closed;
    } finally {
      await stopping.close(); // also after a failure: its NATS connection would keep the test process alive
    }
  });
});
