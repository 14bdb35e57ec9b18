import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ENDPOINT_TYPE, type ResourceSet } from "../src/ads/resources.js";
import { encodeSotw, ResponseCache } from "../src/ads/responses.js";

const set = { typeUrl: ENDPOINT_TYPE, version: "v1" } as ResourceSet;

describe("ResponseCache", () => {
  it("shares one body per key until the set's version changes", () => {
    const cache = new ResponseCache();
    let built = 0;
    const build = (nonce: string) => (built++, encodeSotw(ENDPOINT_TYPE, "v1", [], nonce));
    const first = cache.cached(set, "all", build);
    assert.equal(cache.cached(set, "all", build), first);
    assert.notEqual(cache.cached({ ...set, version: "v2" } as ResourceSet, "all", build), first);
    assert.equal(built, 2);
  });

  it("starts over instead of keeping a body for every key a stream makes up", () => {
    const cache = new ResponseCache();
    let built = 0;
    const build = (nonce: string) => (built++, encodeSotw(ENDPOINT_TYPE, "v1", [], nonce));
    for (let i = 0; i < 1500; i++) cache.cached(set, `subscription-${i}`, build);
    assert.equal(built, 1500);
    cache.cached(set, "subscription-0", build); // dropped when the cache started over
    assert.equal(built, 1501);
    cache.cached(set, "subscription-1499", build); // the newest ones are kept
    assert.equal(built, 1501);
  });
});
