import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ENDPOINT_TYPE, type ResourceSet } from "../src/ads/resources.js";
import { encodeSotw, ResponseCache } from "../src/ads/responses.js";

const set = { typeUrl: ENDPOINT_TYPE, version: "v1" } as ResourceSet;
/** A stream sent nothing yet. */
const fresh = { lastNonce: undefined, earlierNonces: undefined };

describe("ResponseCache", () => {
  it("shares one body per key until the set's version changes", () => {
    const cache = new ResponseCache();
    let built = 0;
    const build = (nonce: string) => (built++, encodeSotw(ENDPOINT_TYPE, "v1", [], nonce));
    const first = cache.cached(set, "all", build, fresh);
    assert.equal(cache.cached(set, "all", build, fresh), first);
    assert.notEqual(cache.cached({ ...set, version: "v2" } as ResourceSet, "all", build, fresh), first);
    assert.equal(built, 2);
  });

  it("gives a stream that was sent the shared body before the same content under a nonce of its own", () => {
    const cache = new ResponseCache();
    const build = (nonce: string) => encodeSotw(ENDPOINT_TYPE, "v1", [], nonce);
    const shared = cache.cached(set, "all", build, fresh);
    const again = cache.cached(set, "all", build, { lastNonce: shared.nonce, earlierNonces: undefined });
    assert.notEqual(again.nonce, shared.nonce);
    assert.notEqual(cache.cached(set, "all", build, { lastNonce: again.nonce, earlierNonces: new Set([shared.nonce]) }), shared, "sent before the last one");
    assert.equal(cache.cached(set, "all", build, { lastNonce: "another stream's", earlierNonces: undefined }), shared, "still shared with every other stream");
  });

  it("starts over instead of keeping a body for every key a stream makes up", () => {
    const cache = new ResponseCache();
    let built = 0;
    const build = (nonce: string) => (built++, encodeSotw(ENDPOINT_TYPE, "v1", [], nonce));
    for (let i = 0; i < 1500; i++) cache.cached(set, `subscription-${i}`, build, fresh);
    assert.equal(built, 1500);
    cache.cached(set, "subscription-0", build, fresh); // dropped when the cache started over
    assert.equal(built, 1501);
    cache.cached(set, "subscription-1499", build, fresh); // the newest ones are kept
    assert.equal(built, 1501);
  });
});
