import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { DiscoveryRequest } from "@envoyage/proto/envoy/service/discovery/v3/discovery.js";
import { ENDPOINT_TYPE } from "../src/ads/resources.js";
import { decodeSotwRequest, resourceNames } from "../src/ads/sotw-request.js";
import { SubscriptionPool } from "../src/ads/subscriptions.js";

const NAMES = Array.from({ length: 500 }, (_, i) => `service-${i}`);

function encoded(request: DiscoveryRequest): Buffer {
  return Buffer.from(DiscoveryRequest.encode(request).finish());
}

describe("decodeSotwRequest", () => {
  it("reads what the generated decoder reads", () => {
    const request = DiscoveryRequest.fromPartial({
      versionInfo: "v1",
      node: { id: "envoy-1", cluster: "edge", userAgentName: "envoy", extensions: [{ name: "envoy.filters.http.router", category: "envoy.filters.http" }] },
      resourceNames: NAMES,
      typeUrl: ENDPOINT_TYPE,
      responseNonce: "7",
    });
    const view = decodeSotwRequest(encoded(request));
    assert.equal(view.versionInfo, "v1");
    assert.equal(view.nodeId, "envoy-1");
    assert.equal(view.typeUrl, ENDPOINT_TYPE);
    assert.equal(view.responseNonce, "7");
    assert.equal(view.errorMessage, undefined);
    assert.deepEqual(resourceNames(view.namesRaw), NAMES);
  });

  it("tells a NACK by its error detail, with or without a message", () => {
    assert.equal(decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ typeUrl: ENDPOINT_TYPE, errorDetail: { code: 3, message: "bad cluster" } }))).errorMessage, "bad cluster");
    assert.equal(decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ typeUrl: ENDPOINT_TYPE, errorDetail: { code: 3, message: "" } }))).errorMessage, "");
  });

  it("has no node id when the request carries no node", () => {
    assert.equal(decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ typeUrl: ENDPOINT_TYPE, resourceNames: ["a"] }))).nodeId, undefined);
  });

  it("keeps every name when other fields come between them", () => {
    const writer = new BinaryWriter();
    writer.uint32(26).string("a");
    writer.uint32(34).string(ENDPOINT_TYPE);
    writer.uint32(26).string("b");
    const view = decodeSotwRequest(Buffer.from(writer.finish()));
    assert.deepEqual(resourceNames(view.namesRaw), ["a", "b"]);
    assert.deepEqual(decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ resourceNames: ["a", "b"] }))).namesRaw, view.namesRaw);
  });

  it("rejects a name whose length is malformed or runs past the end, instead of looping on it", () => {
    for (const hex of [
      "1afaffffff0f", // a 5-byte length that 32-bit shifts would read as -6: back to the tag, forever
      "1a8080808008", // about 2^31
      "1a0561", // 5 bytes announced, 1 there
      "1a80", // the length itself cut short
      "1affffffffff01", // a length of more than 5 bytes
    ]) {
      assert.throws(() => decodeSotwRequest(Buffer.from(hex, "hex")), RangeError, hex);
    }
  });
});

describe("SubscriptionPool.intern", () => {
  it("recognises a repeated list by its bytes, without decoding it", () => {
    const pool = new SubscriptionPool();
    const first = decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ typeUrl: ENDPOINT_TYPE, resourceNames: NAMES, responseNonce: "" })));
    const subscription = pool.intern(first.namesRaw, resourceNames, undefined);
    assert.deepEqual([...subscription.names], NAMES);

    const ack = decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ typeUrl: ENDPOINT_TYPE, resourceNames: NAMES, responseNonce: "1", versionInfo: "v" })));
    const undecodable = () => assert.fail("the names of an unchanged list were decoded");
    assert.equal(pool.intern(ack.namesRaw, undecodable, subscription), subscription);
    // Another stream asking for the same names shares the subscription.
    assert.equal(pool.intern(ack.namesRaw, undecodable, undefined), subscription);
    assert.equal(subscription.refs, 2);
  });

  it("gives a changed list a subscription of its own and releases the old one", () => {
    const pool = new SubscriptionPool();
    const before = decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ resourceNames: ["a", "b"] })));
    const after = decodeSotwRequest(encoded(DiscoveryRequest.fromPartial({ resourceNames: ["a", "b", "c"] })));
    const first = pool.intern(before.namesRaw, resourceNames, undefined);
    const second = pool.intern(after.namesRaw, resourceNames, first);
    assert.notEqual(second, first);
    assert.deepEqual([...second.names], ["a", "b", "c"]);
    assert.equal(pool.size, 1);
  });
});
