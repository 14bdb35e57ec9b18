import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, envIpAddress } from "../src/config.js";
import { connectionOptions, describeAccess, natsAccess } from "../src/nats-access.js";
import { createLogger } from "../src/logger.js";
import { registrySettings } from "../src/registry-settings.js";

const SERVERS = ["nats://127.0.0.1:4222"];
const silent = createLogger("test", "silent");

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

  it("refuses credentials in NATS_URL without repeating them, and says where they go", () => {
    assert.throws(
      () => registrySettings({ NATS_URL: "nats://alice:s3cret@127.0.0.1:4222" }),
      (error: Error) => /^NATS_URL must not carry credentials \(nats:\/\/127\.0\.0\.1:4222\): set NATS_USER and NATS_PASSWORD/.test(error.message) && !error.message.includes("s3cret"),
    );
    for (const url of ["nats://alice:s3cret@127.0.0.1:notaport", "nats://alice:s3/cret@127.0.0.1:notaport", "nats://alice:s3@cret@127.0.0.1:notaport"]) {
      assert.throws(() => registrySettings({ NATS_URL: url }), (error: Error) => error.message.endsWith('got "nats://…@127.0.0.1:notaport"'), url);
    }
  });
});

describe("natsAccess: the nats CLI's settings", () => {
  const files = async () => {
    const dir = await mkdtemp(join(tmpdir(), "envoyage-access-"));
    for (const name of ["user.creds", "user.nk", "ca.pem", "cert.pem", "key.pem"]) await writeFile(join(dir, name), "x");
    return (name: string) => join(dir, name);
  };

  it("takes no credentials and TLS only if the server asks, by default", () => {
    assert.deepEqual(natsAccess({}), { auth: { kind: "none" }, tls: undefined });
    assert.deepEqual(connectionOptions(natsAccess({}), SERVERS, silent), {});
  });

  it("requires TLS for tls:// servers, as the nats CLI does, with or without TLS files", () => {
    assert.deepEqual(connectionOptions(natsAccess({}), ["nats://a:4222", "tls://b:4222"], silent), { tls: {} });
  });

  it("reads NATS_USER alone as a token and with NATS_PASSWORD as a user, like the nats CLI", () => {
    assert.deepEqual(connectionOptions(natsAccess({ NATS_USER: "t0ken" }), SERVERS, silent), { token: "t0ken" });
    assert.deepEqual(connectionOptions(natsAccess({ NATS_TOKEN: "t0ken" }), SERVERS, silent), { token: "t0ken" }, "the CLI's NATS_TOKEN too");
    assert.deepEqual(connectionOptions(natsAccess({ NATS_USER: "alice", NATS_PASSWORD: " s3cret" }), SERVERS, silent), { user: "alice", pass: " s3cret" }, "a password is taken as written");
  });

  it("takes a creds file, an nkey seed file and TLS files, and logs which without a secret", async () => {
    const file = await files();
    assert.deepEqual(natsAccess({ NATS_CREDS: file("user.creds") }).auth, { kind: "creds", file: file("user.creds") });
    assert.deepEqual(natsAccess({ NATS_NKEY: file("user.nk") }).auth, { kind: "nkey", file: file("user.nk") });
    const tls = natsAccess({ NATS_CA: file("ca.pem"), NATS_CERT: file("cert.pem"), NATS_KEY: file("key.pem") });
    assert.deepEqual(tls.tls, { caFile: file("ca.pem"), certFile: file("cert.pem"), keyFile: file("key.pem") });
    assert.deepEqual(connectionOptions(tls, SERVERS, silent).tls, tls.tls);
    const described = JSON.stringify(describeAccess(natsAccess({ NATS_USER: "alice", NATS_PASSWORD: "s3cret", NATS_CA: file("ca.pem") })));
    assert.match(described, /user alice/);
    assert.match(described, /ca\.pem/);
    assert.doesNotMatch(described, /s3cret/);
    assert.doesNotMatch(JSON.stringify(describeAccess(natsAccess({ NATS_USER: "t0ken" }))), /t0ken/);
  });

  it("refuses settings that cannot work, naming them", async () => {
    const file = await files();
    const refusals: [Record<string, string>, RegExp][] = [
      [{ NATS_USER: "alice", NATS_CREDS: file("user.creds") }, /^NATS_USER and NATS_CREDS are different ways to authenticate to NATS: set one$/],
      [{ NATS_CREDS: file("user.creds"), NATS_NKEY: file("user.nk") }, /^NATS_CREDS and NATS_NKEY are different ways/],
      [{ NATS_PASSWORD: "s3cret" }, /^NATS_PASSWORD is set without NATS_USER$/],
      [{ NATS_TOKEN: "t0ken", NATS_USER: "alice" }, /^NATS_TOKEN and NATS_USER are different ways/],
      [{ NATS_CONTEXT: "prod" }, /^NATS_CONTEXT is set, but Envoyage does not read it: nats contexts are not read/],
      [{ NATS_JWT: "eyJ…", NATS_SEED: "SU…" }, /^NATS_JWT is set, but Envoyage does not read it: put the JWT and its seed in a creds file \(NATS_CREDS\)$/],
      [{ NATS_CERT: file("cert.pem") }, /^NATS_CERT and NATS_KEY go together/],
      [{ NATS_CREDS: file("missing.creds") }, /^NATS_CREDS names a file this process cannot read: ENOENT/],
      [{ NATS_CA: "/nonexistent/ca.pem" }, /^NATS_CA names a file this process cannot read/],
    ];
    for (const [env, refusal] of refusals) assert.throws(() => natsAccess(env), (error: unknown) => error instanceof ConfigError && refusal.test(error.message), JSON.stringify(env));
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
