// A NATS that authenticates its clients and requires TLS, as production ones do: the API, the
// replicas and the nats CLI connect with the same NATS_* settings, and a refused service stays up,
// says why once, and connects by itself once the server lets it in.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  freePort,
  makeCertificates,
  record,
  sleep,
  startApi,
  startNats,
  startStack,
  startUpstream,
  startXds,
  upstreamGreeting,
  waitFor,
  type ApiProcess,
  type XdsProcess,
} from "@envoyage/test-support";

const refusals = (output: string) => output.split("\n").filter((line) => line.includes("NATS refused this client's credentials")).length;

describe("NATS with authentication and TLS", () => {
  it("serves Envoy from a NATS that verifies client certificates and passwords, written through the API and the nats CLI", async () => {
    const tls = await makeCertificates();
    const stack = await startStack({
      natsAccess: {
        config: [
          `tls { cert_file: "${tls.serverCertFile}", key_file: "${tls.serverKeyFile}", ca_file: "${tls.caFile}", verify: true }`,
          "authorization { user: envoyage, password: s3cret }",
        ].join("\n"),
        env: { NATS_USER: "envoyage", NATS_PASSWORD: "s3cret", NATS_CA: tls.caFile, NATS_CERT: tls.clientCertFile, NATS_KEY: tls.clientKeyFile },
      },
    });
    try {
      assert.equal((await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A))).status, 201);
      await stack.until("web.example.com", upstreamGreeting("A"));
      await stack.natsCli("kv", "put", "envoyage", "services.cli", JSON.stringify(record(stack.upstreams.B, ["cli.example.com"])));
      await stack.until("cli.example.com", upstreamGreeting("B"));
      for (const output of [stack.api.process.output(), ...stack.replicas.map((replica) => replica.process.output())]) {
        assert.match(output, /"auth":"user envoyage \(NATS_USER, NATS_PASSWORD\)","tls":"with [^"]*ca\.pem, [^"]*client\.pem, [^"]*client\.key"/);
        assert.doesNotMatch(output, /s3cret/);
      }
    } finally {
      await stack.stop();
    }
  });

  it("keeps a refused API and replica up and unready, says why once, and has them ready once the server takes their password", async () => {
    const nats = await startNats({ config: "authorization { user: envoyage, password: old }" });
    const env = { NATS_USER: "envoyage", NATS_PASSWORD: "new" };
    let api: ApiProcess | undefined;
    let replica: XdsProcess | undefined;
    const upstream = await startUpstream("A");
    try {
      api = await startApi({ natsUrl: nats.url, env, until: "listening" });
      replica = await startXds({ natsUrl: nats.url, listenerPort: await freePort(), env });
      await sleep(5_000); // a few refused tries each
      for (const [name, service, readyz] of [["api", api, `${api.url}/readyz`], ["replica", replica, `${replica.statusUrl}/readyz`]] as const) {
        assert.ok(service.process.running, `${name} is up`);
        assert.equal(refusals(service.process.output()), 1, `${name} says it once:\n${service.process.output()}`);
        assert.match(service.process.output(), /"reason":"Authorization Violation"/);
        assert.equal((await fetch(readyz)).status, 503, `${name} is not ready`);
      }
      const refused = await fetch(`${api.url}/v1/services/web`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(record(upstream)) });
      assert.equal(refused.status, 503);

      await nats.reload("authorization { user: envoyage, password: new }");
      await replica.ready();
      await waitFor("the API to be ready", async () => ((await fetch(`${api!.url}/readyz`)).ok ? true : undefined));
      const written = await fetch(`${api.url}/v1/services/web`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(record(upstream)) });
      assert.equal(written.status, 201);
    } finally {
      await replica?.stop();
      await api?.stop();
      await upstream.close();
      await nats.stop();
    }
  });
});
