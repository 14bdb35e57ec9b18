import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, envIpAddress, registrySettings } from "../src/config.js";

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

describe("envIpAddress", () => {
  it("takes IPv4 and IPv6 addresses, and localhost only where a name can be bound", () => {
    assert.equal(envIpAddress({}, "XDS_HOST", "0.0.0.0", { localhost: true }), "0.0.0.0");
    assert.equal(envIpAddress({ XDS_HOST: " ::1 " }, "XDS_HOST", "0.0.0.0", { localhost: true }), "::1");
    assert.equal(envIpAddress({ XDS_HOST: "localhost" }, "XDS_HOST", "0.0.0.0", { localhost: true }), "localhost");
    assert.equal(envIpAddress({ LISTENER_ADDRESS: "127.0.0.1" }, "LISTENER_ADDRESS", "0.0.0.0", { localhost: false }), "127.0.0.1");
  });

  it("refuses a name Envoy would reject as a listener's address, or a bind would fail on, naming the setting and the value", () => {
    assert.throws(() => envIpAddress({ LISTENER_ADDRESS: "localhost" }, "LISTENER_ADDRESS", "0.0.0.0", { localhost: false }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.message, 'LISTENER_ADDRESS must be an IP address (such as 0.0.0.0 or 127.0.0.1), got "localhost"');
      return true;
    });
    for (const bad of ["nowhere.invalid", "300.1.1.1", "127.0.0.1:80"]) {
      assert.throws(() => envIpAddress({ API_HOST: bad }, "API_HOST", "0.0.0.0", { localhost: true }), /^ConfigError: API_HOST must be an IP address or localhost/, bad);
    }
  });
});
