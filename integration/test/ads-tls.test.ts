// ADS over mutual TLS with a real Envoy: a replica given XDS_TLS_CERT, XDS_TLS_KEY and
// XDS_TLS_CLIENT_CA serves an Envoy whose bootstrap has the README's transport socket, and no
// Envoy without a certificate from that CA.
import assert from "node:assert/strict";
import { Agent } from "node:http";
import { describe, it } from "node:test";
import {
  freePort,
  getThroughEnvoy,
  makeCertificates,
  record,
  sleep,
  startApi,
  startEnvoy,
  startNats,
  startUpstream,
  startXds,
  upstreamGreeting,
  waitFor,
  type ApiProcess,
  type Envoy,
  type NatsServer,
  type Upstream,
  type XdsProcess,
} from "@envoyage/test-support";

describe("ADS over mutual TLS", () => {
  it("serves an Envoy presenting a certificate from XDS_TLS_CLIENT_CA, and not one without", async () => {
    const tls = await makeCertificates();
    const parts: { stop(): Promise<void> }[] = [];
    try {
      const nats: NatsServer = await startNats();
      parts.push(nats);
      const api: ApiProcess = await startApi({ natsUrl: nats.url });
      parts.push(api);
      const listenerPort = await freePort();
      const replica: XdsProcess = await startXds({
        natsUrl: nats.url,
        listenerPort,
        env: { XDS_TLS_CERT: tls.serverCertFile, XDS_TLS_KEY: tls.serverKeyFile, XDS_TLS_CLIENT_CA: tls.caFile },
      });
      parts.push(replica);
      await replica.ready();
      assert.match(replica.process.output(), /"xdsTls":"mutual \(XDS_TLS_CLIENT_CA\)"/);
      const upstream: Upstream = await startUpstream("A");
      parts.push({ stop: () => upstream.close() });

      const trusted: Envoy = await startEnvoy({ xdsPorts: [replica.xdsPort], nodeId: "trusted", xdsTls: { caFile: tls.caFile, certFile: tls.clientCertFile, keyFile: tls.clientKeyFile } });
      parts.push(trusted);
      const stranger: Envoy = await startEnvoy({ xdsPorts: [replica.xdsPort], nodeId: "stranger", xdsTls: { caFile: tls.caFile } });
      parts.push(stranger);

      const put = await fetch(`${api.url}/v1/services/web`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(record(upstream)) });
      assert.equal(put.status, 201);
      const agent = new Agent();
      await waitFor("web.example.com through the trusted Envoy", async () => {
        const response = await getThroughEnvoy(agent, listenerPort, "web.example.com").catch(() => undefined);
        return response?.body === upstreamGreeting("A") ? true : undefined;
      });
      agent.destroy();

      await sleep(2_000); // the stranger has been retrying all along (0.1 s back-off)
      assert.deepEqual((await stranger.config()).clusters, [], "no config reached the Envoy without a client certificate");
      assert.ok((await stranger.stat("cluster.xds_cluster.ssl.connection_error")) > 0, "its TLS handshakes were refused");
      const envoys = (await (await fetch(`${api.url}/v1/envoys`)).json()) as { envoys: { node: string }[] };
      assert.deepEqual(envoys.envoys.map((envoy) => envoy.node), ["trusted"]);
    } finally {
      for (const part of parts.reverse()) await part.stop();
    }
  });
});
