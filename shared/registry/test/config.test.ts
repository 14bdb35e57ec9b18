import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, registrySettings } from "../src/config.js";

describe("registrySettings", () => {
  it("takes NATS_URL as one server or a comma-separated list, with or without a scheme", () => {
    assert.deepEqual(registrySettings({}).natsServers, ["nats://127.0.0.1:4222"]);
    assert.deepEqual(registrySettings({ NATS_URL: "nats://a:4222, tls://b:4223,127.0.0.1:4224" }).natsServers, ["nats://a:4222", "tls://b:4223", "127.0.0.1:4224"]);
  });

  it("refuses a NATS_URL the client could never connect to, naming the setting and the value", () => {
    for (const bad of ["nats://127.0.0.1:notaport", "http://127.0.0.1:4222", "nats://", " , "]) {
      assert.throws(() => registrySettings({ NATS_URL: bad }), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /^NATS_URL must/);
        return true;
      }, bad);
    }
    assert.throws(() => registrySettings({ NATS_URL: "nats://127.0.0.1:notaport" }), /got "nats:\/\/127\.0\.0\.1:notaport"/);
  });
});
