// The NATS connection against real nats-servers that authenticate clients and require TLS, with
// the nats CLI's settings (NATS_USER, NATS_PASSWORD, NATS_CREDS, NATS_NKEY, NATS_CA, NATS_CERT,
// NATS_KEY), read by registrySettings as the services read them.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";
import { createAccount, createOperator, createUser } from "@nats-io/nkeys";
import { Kvm } from "@nats-io/kv";
import { pino } from "pino";
import { CONNECT_TIMEOUT_MS, NatsLink, PROBE_EVERY_MS, registrySettings, type Env } from "@envoyage/registry";
import { freePort, makeCertificates, sleep, startNats, waitFor, type LocalNatsServer } from "@envoyage/test-support";

interface LogLine {
  level: number;
  msg: string;
  reason?: string;
  auth?: string;
}

/** A link configured from the environment as the services configure theirs, and what it logged. */
function linkFor(nats: LocalNatsServer, env: Env) {
  const lines: LogLine[] = [];
  const text: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) {
        text.push(line);
        lines.push(JSON.parse(line) as LogLine);
      }
      done();
    },
  });
  const settings = registrySettings({ NATS_URL: nats.url, ...env });
  const link = new NatsLink({ servers: settings.natsServers, access: settings.natsAccess, name: "nats-access-test", logger: pino({ level: "debug" }, sink) });
  return { link, lines, text: () => text.join("\n") };
}

/** Connected for real: a JetStream write and its read back. */
async function writesAndReads(link: NatsLink): Promise<void> {
  const kv = await new Kvm(await link.connect()).create("access");
  await kv.put("probe", "ok");
  assert.equal((await kv.get("probe"))?.string(), "ok");
}

async function tempFile(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), "envoyage-access-")), name);
  await writeFile(path, content);
  return path;
}

/** An operator-mode nats-server config (decentralized auth, as Synadia Cloud) and a user's creds file. */
async function operatorMode(): Promise<{ config: string; credsFile: string }> {
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const user = createUser();
  const unlimited = { conn: -1, subs: -1, data: -1, payload: -1, imports: -1, exports: -1, leaf: -1, wildcards: true };
  const jetstream = { disk_storage: -1, mem_storage: -1, streams: -1, consumer: -1 };
  const config = [
    `operator: ${await encodeOperator("test", operator, { system_account: system.getPublicKey() })}`,
    `system_account: ${system.getPublicKey()}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${system.getPublicKey()}: ${await encodeAccount("SYS", system, {}, { signer: operator })}`,
    `  ${account.getPublicKey()}: ${await encodeAccount("APP", account, { limits: { ...unlimited, ...jetstream } }, { signer: operator })}`,
    "}",
  ].join("\n");
  return { config, credsFile: await tempFile("user.creds", fmtCreds(await encodeUser("envoyage", user, account), user)) };
}

describe("NATS with authentication and TLS", () => {
  it("connects with a token, a user and password, an nkey seed file and a creds file", async () => {
    const nkey = createUser();
    const ways: [string, string, () => Promise<Env>][] = [
      ["a token (NATS_USER alone)", "authorization { token: t0ken }", async () => ({ NATS_USER: "t0ken" })],
      ["a user and password", "authorization { user: envoyage, password: s3cret }", async () => ({ NATS_USER: "envoyage", NATS_PASSWORD: "s3cret" })],
      ["an nkey seed file", `authorization { users: [ { nkey: ${nkey.getPublicKey()} } ] }`, async () => ({ NATS_NKEY: await tempFile("user.nk", nkey.getSeed()) })],
    ];
    const operator = await operatorMode();
    ways.push(["a creds file", operator.config, async () => ({ NATS_CREDS: operator.credsFile })]);
    for (const [how, config, env] of ways) {
      const nats = await startNats({ config });
      const { link, text } = linkFor(nats, await env());
      try {
        await writesAndReads(link);
        assert.doesNotMatch(text(), /t0ken|s3cret|SU[A-Z0-9]{50,}/, `${how}: no secret in the log`);
      } finally {
        await link.close();
        await nats.stop();
      }
    }
  });

  it("connects over TLS, verified against NATS_CA, with a client certificate where the server asks for one", async () => {
    const certificates = await makeCertificates();
    const nats = await startNats({
      config: `tls { cert_file: "${certificates.serverCertFile}", key_file: "${certificates.serverKeyFile}", ca_file: "${certificates.caFile}", verify: true }`,
    });
    const { link } = linkFor(nats, { NATS_CA: certificates.caFile, NATS_CERT: certificates.clientCertFile, NATS_KEY: certificates.clientKeyFile });
    const { link: withoutCertificate, lines } = linkFor(nats, { NATS_CA: certificates.caFile });
    try {
      await writesAndReads(link);
      void withoutCertificate.connect();
      // The server refuses it after the handshake (TLS 1.3): the client learns when the connect times out.
      await waitFor("the refusal of a client without a certificate", () => lines.find((line) => line.msg === "cannot connect to NATS; trying again"), { timeoutMs: CONNECT_TIMEOUT_MS + 5_000 });
    } finally {
      await link.close();
      await withoutCertificate.close();
      await nats.stop();
    }
  });

  it("keeps trying a server that refuses its credentials, says so once, and connects once they are accepted", async () => {
    const nats = await startNats({ config: "authorization { user: envoyage, password: old }" });
    const { link, lines, text } = linkFor(nats, { NATS_USER: "envoyage", NATS_PASSWORD: "new" });
    try {
      const connected = link.connect();
      await sleep(1_000 + PROBE_EVERY_MS * 2.5); // the client's own tries, and three probes
      const refusals = lines.filter((line) => line.msg === "NATS refused this client's credentials; trying again");
      assert.equal(refusals.length, 1, text());
      assert.equal(refusals[0]!.reason, "Authorization Violation");
      assert.match(refusals[0]!.auth!, /user envoyage \(NATS_USER, NATS_PASSWORD\)/);

      await nats.reload("authorization { user: envoyage, password: new }");
      await connected;
      await writesAndReads(link);
      assert.doesNotMatch(text(), /"(old|new)"/, "no password in the log");
    } finally {
      await link.close();
      await nats.stop();
    }
  });

  it("reconnects after the server refused it for a while, logging the refusal once, not at every try", async () => {
    const nats = await startNats({ config: "authorization { user: envoyage, password: s3cret }" });
    const { link, lines, text } = linkFor(nats, { NATS_USER: "envoyage", NATS_PASSWORD: "s3cret" });
    try {
      await writesAndReads(link);
      // nats-server closes the connections its new config no longer lets in.
      await nats.reload("authorization { user: envoyage, password: rotated }");
      await waitFor("the link to be let go", () => (link.isConnected ? undefined : true));
      await sleep(2_000); // ~8 reconnect tries, each refused
      assert.equal(lines.filter((line) => line.msg === "NATS error" && line.reason === "Authorization Violation").length, 1, text());
      assert.equal(lines.filter((line) => line.msg === "disconnected from NATS; reconnecting").length, 1, text());

      await nats.reload("authorization { user: envoyage, password: s3cret }");
      await waitFor("the link to reconnect", () => (link.isConnected ? true : undefined), { timeoutMs: 10_000 });
      await writesAndReads(link);
      assert.equal(lines.filter((line) => line.msg === "reconnected to NATS").length, 1, text());
    } finally {
      await link.close();
      await nats.stop();
    }
  });

  it("reconnects with the nkey seed it had while the file is missing or empty, as in a rotation not done in one step", async () => {
    const user = createUser();
    const nats = await startNats({ config: `authorization { users: [ { nkey: ${user.getPublicKey()} } ] }` });
    const seedFile = await tempFile("user.nk", user.getSeed());
    const { link, lines, text } = linkFor(nats, { NATS_NKEY: seedFile });
    try {
      await writesAndReads(link);
      await writeFile(seedFile, "");
      await nats.stop();
      await nats.restart();
      await waitFor("the link to reconnect", () => (lines.some((line) => line.msg === "reconnected to NATS") ? true : undefined), { timeoutMs: 10_000 });
      await writesAndReads(link);
      assert.match(text(), /"reason":"the file is empty".*"msg":"NATS_NKEY cannot be read; connecting with what it held before"/);
    } finally {
      await link.close();
      await nats.stop();
    }
  });

  it("requires TLS of a tls:// server, as the nats CLI does: a server without TLS is refused, not used in plaintext", async () => {
    const nats = await startNats();
    const { link, lines } = linkFor(nats, { NATS_URL: nats.url.replace("nats://", "tls://") });
    try {
      void link.connect();
      const refusal = await waitFor("the refusal", () => lines.find((line) => line.msg === "cannot connect to NATS; trying again"));
      assert.match(refusal.reason ?? "", /TLS/i);
      assert.equal(link.isConnected, false);
    } finally {
      await link.close();
      await nats.stop();
    }
  });

  it("keeps in its pool a server that was down when it connected, and moves to it later", async () => {
    const downPort = await freePort();
    const up = await startNats();
    const settings = registrySettings({ NATS_URL: `nats://127.0.0.1:${downPort},${up.url}` });
    const link = new NatsLink({ servers: settings.natsServers, name: "pool", logger: pino({ level: "silent" }) });
    let later: LocalNatsServer | undefined;
    try {
      assert.equal((await link.connect()).getServer(), `127.0.0.1:${up.port}`);
      later = await startNats({ port: downPort });
      await up.stop(); // the only server left is the one that was down at first
      await waitFor("the link to move to the other server", () => (link.isConnected && link.server === `127.0.0.1:${downPort}` ? true : undefined), { timeoutMs: 10_000 });
    } finally {
      await link.close();
      await later?.stop();
      await up.stop();
    }
  });

  it("keeps no connection that comes up after the link was closed", async () => {
    const port = await freePort();
    const monitor = await freePort();
    const settings = registrySettings({ NATS_URL: `nats://127.0.0.1:${port}` });
    const link = new NatsLink({ servers: settings.natsServers, name: "closed-while-connecting", logger: pino({ level: "silent" }) });
    void link.connect(); // nothing listens yet: the client keeps trying
    await link.close();
    const nats = await startNats({ port, config: `http: "127.0.0.1:${monitor}"` });
    try {
      await sleep(1_500); // the client's next tries find the server, and the link lets the connection go
      const connections = (await (await fetch(`http://127.0.0.1:${monitor}/connz`)).json()) as { num_connections: number };
      assert.equal(connections.num_connections, 0);
      assert.equal(link.isConnected, false);
    } finally {
      await nats.stop();
    }
  });

  it("says when the client closes the connection for good, so the service can exit rather than serve stale data", async () => {
    const nats = await startNats();
    const { link, lines } = linkFor(nats, {});
    const events: string[] = [];
    link.onEvent((event) => events.push(event));
    try {
      await (await link.connect()).close(); // as the client does on what no retry fixes
      await waitFor("the link to say so", () => (events.includes("lost") ? true : undefined));
      assert.ok(lines.some((line) => line.msg === "the NATS connection closed for good"));
    } finally {
      await link.close();
      await nats.stop();
    }
  });
});
