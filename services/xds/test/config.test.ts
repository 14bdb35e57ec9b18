// The replica's settings that are its own: ADS over TLS.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ConfigError } from "@envoyage/registry";
import { loadConfig } from "../src/config.js";

/** Three readable files standing for a certificate, its key and a CA (the config reads no further). */
async function pemFiles(): Promise<[string, string, string]> {
  const dir = await mkdtemp(join(tmpdir(), "envoyage-xds-config-"));
  const files = ["cert.pem", "key.pem", "ca.pem"].map((name) => join(dir, name)) as [string, string, string];
  for (const file of files) await writeFile(file, "x");
  return files;
}

describe("XDS_TLS_*", () => {
  it("serves plaintext by default, TLS with a certificate and key, mutual TLS with a client CA", async () => {
    const [cert, key, ca] = await pemFiles();
    assert.equal(loadConfig({}).tls, undefined);
    assert.deepEqual(loadConfig({ XDS_TLS_CERT: cert, XDS_TLS_KEY: key }).tls, { certFile: cert, keyFile: key, clientCaFile: undefined });
    assert.deepEqual(loadConfig({ XDS_TLS_CERT: cert, XDS_TLS_KEY: key, XDS_TLS_CLIENT_CA: ca }).tls, { certFile: cert, keyFile: key, clientCaFile: ca });
  });

  it("refuses halves of a setting and files it cannot read, naming them", async () => {
    const [cert, key, ca] = await pemFiles();
    const refusals: [Record<string, string>, RegExp][] = [
      [{ XDS_TLS_CERT: cert }, /^XDS_TLS_CERT and XDS_TLS_KEY go together/],
      [{ XDS_TLS_CLIENT_CA: ca }, /^XDS_TLS_CLIENT_CA needs XDS_TLS_CERT and XDS_TLS_KEY/],
      [{ XDS_TLS_CERT: "/nonexistent.pem", XDS_TLS_KEY: key }, /^XDS_TLS_CERT names a file this process cannot read: ENOENT/],
    ];
    for (const [env, refusal] of refusals) assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && refusal.test(error.message), JSON.stringify(env));
  });
});
