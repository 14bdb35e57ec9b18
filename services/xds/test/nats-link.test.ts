// The NATS connection both services hold, against a real nats-server.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger, NatsLink } from "@envoyage/registry";
import { startNats } from "@envoyage/test-support";

describe("NatsLink", () => {
  it("closes within its drain limit when the server is connected but answers nothing", async () => {
    const nats = await startNats();
    const link = new NatsLink({ servers: [nats.url], name: "nats-link-test", logger: createLogger("test", "silent") });
    try {
      const nc = await link.connect();
      nc.subscribe("anything"); // something for the drain to wait on
      await nats.process.pause();
      const started = performance.now();
      await link.close();
      const took = performance.now() - started;
      assert.ok(took < 3000, `closing took ${Math.round(took)} ms`);
      assert.ok(nc.isClosed());
    } finally {
      await nats.process.resume();
      await nats.stop();
    }
  });
});
