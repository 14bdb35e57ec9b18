import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { claimKey, decodeRecord, encodeRecord, isAddress, parseKey, serviceKey, SERVICE_NAME_PATTERN } from "../src/index.js";

const valid = { domains: ["web.example.com"], endpoints: [{ address: "web-a", port: 5678 }] };

function problemOf(value: unknown): { field: string; message: string } {
  const result = decodeRecord(JSON.stringify(value));
  assert.equal(result.ok, false, `expected ${JSON.stringify(value)} to be rejected`);
  return (result as { problem: { field: string; message: string } }).problem;
}

describe("service record schema", () => {
  it("accepts the minimal record from DESIGN.md", () => {
    const result = decodeRecord(new TextEncoder().encode(JSON.stringify(valid)));
    assert.deepEqual(result, { ok: true, record: valid });
  });

  it("accepts wildcard domains, IPv4, IPv6 and hostnames", () => {
    const record = {
      domains: ["*.example.com", "a.b-c.example.org", "localhost"],
      endpoints: [
        { address: "10.0.0.1", port: 1 },
        { address: "::1", port: 65535 },
        { address: "2001:db8::7", port: 80 },
        { address: "Web-A.internal", port: 8080 },
      ],
    };
    assert.equal(decodeRecord(JSON.stringify(record)).ok, true);
  });

  const rejections: [string, unknown, string, RegExp][] = [
    ["an unknown top-level field", { ...valid, weight: 3 }, "/weight", /not a known field/],
    ["an unknown endpoint field", { ...valid, endpoints: [{ address: "a", port: 1, tls: true }] }, "/endpoints/0/tls", /not a known field/],
    // Quoted shortened: a record written with the CLI could name a field with a megabyte.
    ["an unknown field with a huge name", { ...valid, ["x".repeat(100_000)]: 1 }, `/${"x".repeat(100)}… (100000 characters)`, /not a known field/],
    ["no domains", { ...valid, domains: [] }, "/domains", /^must not be empty$/],
    ["no endpoints", { ...valid, endpoints: [] }, "/endpoints", /^must not be empty$/],
    ["a missing endpoints field", { domains: ["a.com"] }, "/endpoints", /is required/],
    ["port 0", { ...valid, endpoints: [{ address: "a", port: 0 }] }, "/endpoints/0/port", /^must be at least 1$/],
    ["port 65536", { ...valid, endpoints: [{ address: "a", port: 65536 }] }, "/endpoints/0/port", /^must be at most 65535$/],
    ["a port given as a string", { ...valid, endpoints: [{ address: "a", port: "80" }] }, "/endpoints/0/port", /^must be a whole number$/],
    ["a fractional port", { ...valid, endpoints: [{ address: "a", port: 80.5 }] }, "/endpoints/0/port", /^must be a whole number$/],
    ["101 domains", { ...valid, domains: Array.from({ length: 101 }, (_, i) => `d${i}.com`) }, "/domains", /^must list at most 100 items$/],
    ["domains as a string", { ...valid, domains: "a.com" }, "/domains", /^must be an array$/],
    ["an address of 254 characters", { ...valid, endpoints: [{ address: `${"a".repeat(63)}.`.repeat(4).slice(0, 254), port: 1 }] }, "/endpoints/0/address", /^must be at most 253 characters long$/],
    ["an uppercase domain", { ...valid, domains: ["Web.example.com"] }, "/domains/0", /must be a lowercase hostname/],
    ["a domain with a port", { ...valid, domains: ["web.example.com:80"] }, "/domains/0", /must be a lowercase hostname/],
    ["a bare * domain", { ...valid, domains: ["*"] }, "/domains/0", /must be a lowercase hostname/],
    ["a wildcard in the middle", { ...valid, domains: ["a.*.com"] }, "/domains/0", /must be a lowercase hostname/],
    ["a label starting with a hyphen", { ...valid, domains: ["-a.com"] }, "/domains/0", /must be a lowercase hostname/],
    ["a label longer than 63", { ...valid, domains: [`${"a".repeat(64)}.com`] }, "/domains/0", /must be a lowercase hostname/],
    ["duplicate domains", { ...valid, domains: ["a.com", "a.com"] }, "/domains", /lists the same value twice \(items 0 and 1\)/],
    ["an address with a space", { ...valid, endpoints: [{ address: "web a", port: 1 }] }, "/endpoints/0/address", /IPv4 or IPv6 address or a hostname/],
    ["a fully qualified hostname (Envoy's resolver does not find localhost. in /etc/hosts)", { ...valid, endpoints: [{ address: "localhost.", port: 1 }] }, "/endpoints/0/address", /no dot at the end/],
    ["an invalid dotted quad", { ...valid, endpoints: [{ address: "999.1.1.1", port: 1 }] }, "/endpoints/0/address", /IPv4 or IPv6/],
    ["an IPv6 zone index", { ...valid, endpoints: [{ address: "fe80::1%eth0", port: 1 }] }, "/endpoints/0/address", /IPv4 or IPv6/],
    ["an empty address", { ...valid, endpoints: [{ address: "", port: 1 }] }, "/endpoints/0/address", /^must not be empty$/],
    ["a record read back from GET", { ...valid, name: "web", revision: 3 }, "/name", /not a field of the record but of the API's answer: drop name, revision, status and problem/],
    ["a field with an empty name", { ...valid, "": 1 }, "", /^has a field with an empty name \(""\)$/],
    ["an internationalized domain as written", { ...valid, domains: ["bücher.example.com"] }, "/domains/0", /punycode form \(xn--…\)/],
    ["an array instead of an object", [valid], "", /^must be an object$/],
  ];
  for (const [what, value, field, message] of rejections) {
    it(`rejects ${what}, naming the field`, () => {
      const problem = problemOf(value);
      assert.equal(problem.field, field);
      assert.match(problem.message, message);
    });
  }

  it("rejects bytes that are not JSON", () => {
    const result = decodeRecord(new Uint8Array([0x7b, 0x22, 0xff]));
    assert.equal(result.ok, false);
    assert.match((result as { problem: { message: string } }).problem.message, /not UTF-8 JSON/);
  });

  it("encodes records canonically", () => {
    const messy = { endpoints: [{ port: 1, address: "a" }], domains: ["x.com"] };
    assert.equal(encodeRecord(messy), '{"domains":["x.com"],"endpoints":[{"address":"a","port":1}]}');
  });

  it("names services with DNS labels", () => {
    const name = new RegExp(SERVICE_NAME_PATTERN);
    for (const ok of ["web", "a", "web-2", "0abc", "a".repeat(63)]) assert.match(ok, name);
    for (const bad of ["Web", "-web", "web-", "web.a", "web_a", "", "a".repeat(64)]) assert.doesNotMatch(bad, name);
  });

  it("tells addresses apart", () => {
    assert.equal(isAddress("127.0.0.1"), true);
    assert.equal(isAddress("web-a"), true);
    assert.equal(isAddress("1.2.3"), false);
    assert.equal(isAddress("a..b"), false);
  });
});

describe("KV key layout", () => {
  it("maps services and claims to keys and back", () => {
    assert.equal(serviceKey("web"), "services.web");
    assert.deepEqual(parseKey("services.web"), { kind: "service", name: "web" });
    assert.equal(claimKey("web.example.com"), "domains.web.example.com");
    assert.equal(claimKey("*.example.com"), "domains._.example.com");
    assert.deepEqual(parseKey("domains._.example.com"), { kind: "claim", domain: "*.example.com" });
    assert.deepEqual(parseKey("status.x"), { kind: "other" });
  });

  it("leaves keys whose name the API would refuse outside the layout", () => {
    for (const key of ["services.web:1", "services.Web", "services.", "services.a.b", "services.wéb", "domains.Web.example.com", "domains.a#b.com", "domains.", `domains.${"a".repeat(250)}.com`]) {
      assert.deepEqual(parseKey(key), { kind: "invalid" }, key);
    }
  });
});
