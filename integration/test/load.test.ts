// Zero failed requests while config changes under load: autocannon sends steady traffic to
// web.example.com through a real Envoy while its upstream is switched A↔B 200 times with
// in-place PUTs and other services are added and removed. Every response must be a 2xx, in
// both xDS modes. New services are probed while they are added: no 5xx before their route, and
// services created and at once removed never hold later ones back.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { record, startLoad, startStack, upstreamGreeting, type Stack } from "@envoyage/test-support";

const WEB = "web.example.com";
const SWITCHES = 200;
const NEW_SERVICES = 40;
/** Services created and at once deleted or changed, each followed by a new service. */
const FLASHES = 20;

for (const protocol of ["sotw", "delta"] as const) {
  describe(`changes under load (${protocol})`, () => {
    let stack: Stack;
    before(async () => {
      stack = await startStack({ protocol });
    });
    after(async () => {
      await stack?.stop();
    });

    it(`serves every request while ${WEB} switches upstreams ${SWITCHES} times and other services come and go`, async (t) => {
      await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
      await stack.until(WEB, upstreamGreeting("A"));
      const before = { A: stack.upstreams.A.requests, B: stack.upstreams.B.requests };

      const load = startLoad(t, { port: stack.listenerPort, host: WEB });

      let churning = true;
      const churn = (async () => {
        let n = 0;
        while (churning) {
          const name = `other-${n % 20}`;
          const put = await stack.call("PUT", `/v1/services/${name}`, record(stack.upstreams.B, [`${name}.example.com`]));
          assert.ok(put.status < 300, `PUT ${name}: ${put.status}`);
          if (n >= 5) await stack.call("DELETE", `/v1/services/other-${(n - 5) % 20}`);
          n++;
        }
        return n;
      })();

      for (let i = 1; i <= SWITCHES; i++) {
        const target = i % 2 === 1 ? "B" : "A";
        const response = await stack.call("PUT", "/v1/services/web", record(stack.upstreams[target]));
        assert.equal(response.status, 200);
        await stack.until(WEB, upstreamGreeting(target));
      }
      churning = false;
      const churned = await churn;
      const result = await load.stop();

      t.diagnostic(
        `${result.requests} requests, ${result.ok} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors, ` +
          `${result.timeouts} timeouts; ${SWITCHES} switches, ${churned} other services added and removed`,
      );
      assert.ok(result.ok > 1000, `only ${result.ok} requests got through`);
      assert.equal(result.non2xx, 0, `non-2xx responses: ${JSON.stringify(result.failedByStatus)}`);
      assert.equal(result.errors, 0);
      assert.equal(result.timeouts, 0);
      assert.ok(stack.upstreams.A.requests > before.A && stack.upstreams.B.requests > before.B, "traffic reached both upstreams");
    });

    it(`routes each of ${NEW_SERVICES} new services make-before-break: 404 until its route arrives, then its upstream, never a 5xx`, async () => {
      const answers = new Map<number, number>();
      for (let i = 0; i < NEW_SERVICES; i++) {
        const host = `fresh-${i}.example.com`;
        const target = i % 2 === 0 ? "A" : "B";
        // Probed from the moment the PUT leaves: the cluster, its endpoints and the route arrive
        // while requests for the new domain keep coming.
        const put = stack.call("PUT", `/v1/services/fresh-${i}`, record(stack.upstreams[target], [host]));
        const deadline = Date.now() + 10_000;
        for (;;) {
          const response = await stack.get(host);
          if (response.body === upstreamGreeting(target)) break;
          answers.set(response.status, (answers.get(response.status) ?? 0) + 1);
          assert.ok(Date.now() < deadline, `${host} not routed to ${target} after 10 s (last: ${response.status} ${response.body})`);
        }
        assert.equal((await put).status, 201);
      }
      const other = [...answers].filter(([status]) => status !== 404);
      assert.deepEqual(other, [], `answers other than 404 before the route: ${JSON.stringify(Object.fromEntries(answers))}`);
    });

    it(`routes new services within 5 s while others are created and at once deleted or given hostname endpoints, ${FLASHES} times`, async () => {
      // Envoy may be warming the short-lived service's cluster, waiting for endpoints that are
      // gone: it then held every later cluster and route back for its initial fetch timeout (15 s).
      for (let i = 0; i < FLASHES; i++) {
        const name = `flash-${i}`;
        const domains = [`${name}.example.com`];
        assert.equal((await stack.call("PUT", `/v1/services/${name}`, record(stack.upstreams.A, domains))).status, 201);
        const undo =
          i % 2 === 0
            ? await stack.call("DELETE", `/v1/services/${name}`)
            : await stack.call("PUT", `/v1/services/${name}`, { domains, endpoints: [{ address: "localhost", port: stack.upstreams.B.port }] });
        assert.ok(undo.status < 300, `${name}: ${undo.status}`);
        assert.equal((await stack.call("PUT", `/v1/services/after-${i}`, record(stack.upstreams.B, [`after-${i}.example.com`]))).status, 201);
        await stack.until(`after-${i}.example.com`, upstreamGreeting("B"), 5_000);
      }
    });
  });
}
