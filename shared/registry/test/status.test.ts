// Decoding the status bucket's entries: what a replica writes is read back, anything else is left
// out rather than breaking the API's GET /v1/envoys.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeEnvoyPage, decodeRejectedPage, decodeReplicaReport, type EnvoyReport } from "../src/index.js";

const bytes = (value: unknown) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
const envoy: EnvoyReport = {
  node: "envoy-1",
  replica: "xds-1",
  stream: 3,
  protocol: "sotw",
  connected: true,
  connectedAt: "2026-11-27T10:00:00.000Z",
  updatedAt: "2026-11-27T10:00:01.000Z",
  syncedRevision: 12,
  types: { CDS: { sent: "ab", acked: "ab", ackedAt: "2026-11-27T10:00:01.000Z", nacked: null } },
};

describe("status entries", () => {
  it("reads a page of Envoy reports back as written", () => {
    assert.deepEqual(decodeEnvoyPage(bytes({ envoys: [envoy, { ...envoy, node: "envoy-2", syncedRevision: null }] }))?.length, 2);
  });

  it("leaves out reports of another shape, and is undefined for what is not a page", () => {
    const odd = [{ node: "n", types: {} }, { ...envoy, types: { CDS: null } }, { ...envoy, protocol: "rest" }, null, 7];
    assert.deepEqual(decodeEnvoyPage(bytes({ envoys: [envoy, ...odd] })), [envoy]);
    for (const value of ["not json", "null", "[]", '{"envoys":{}}', "\xff"]) assert.equal(decodeEnvoyPage(bytes(value)), undefined, value);
  });

  it("reads a replica report, and nothing that lacks its fields", () => {
    const report = { replica: "xds-1", updatedAt: "2026-11-27T10:00:00.000Z", ready: true, revision: 40 };
    assert.deepEqual(decodeReplicaReport(bytes(report)), report);
    assert.equal(decodeReplicaReport(bytes({ ...report, ready: null })), undefined);
    assert.equal(decodeReplicaReport(bytes({ ...report, revision: "40" })), undefined);
    assert.equal(decodeReplicaReport(bytes("{")), undefined);
  });

  it("reads a page of rejected services, leaving out entries of another shape", () => {
    const conflict = { state: "conflict", revision: 39, conflicts: [{ domain: "a.example.com", heldBy: "b" }], servingRevision: 12 };
    const invalid = { state: "invalid", revision: 41, problem: "/endpoints must not be empty", servingRevision: null };
    const page = decodeRejectedPage(bytes({ rejected: { web: conflict, api: invalid, odd: { state: "gone", revision: 1 }, none: null } }));
    assert.deepEqual(page, new Map<string, unknown>([["web", conflict], ["api", invalid]]));
    for (const value of ["not json", "null", '{"rejected":[]}', '{"rejected":null}', "{}"]) assert.equal(decodeRejectedPage(bytes(value)), undefined, value);
  });
});
