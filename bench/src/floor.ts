// A real Envoy fed by Envoyage's ADS server directly (floor-server.ts): no API, no NATS, no
// registry rules. What a push to Envoy costs on this machine, measured in the same run as the
// stack, so the stack's figures can be read against it.
import { fork } from "node:child_process";
import type { ServiceRecord } from "@envoyage/registry";
import { startEnvoy } from "@envoyage/test-support";
import { pidOf } from "./proc.js";

export interface Floor {
  /** Commits these services (added or changed) as one push. */
  push(services: Record<string, ServiceRecord>): void;
  envoyPid: number;
  stop(): Promise<void>;
}

export async function startFloor(protocol: "sotw" | "delta", listenerPort: number): Promise<Floor> {
  const child = fork(new URL("./floor-server.js", import.meta.url), [String(listenerPort)]);
  const { port } = await new Promise<{ port: number }>((resolve) => child.once("message", resolve as (m: unknown) => void));
  const envoy = await startEnvoy({ xdsPorts: [port], protocol }).catch((error: unknown) => {
    child.kill();
    throw error;
  });
  return {
    push: (services) => child.send({ services }),
    envoyPid: pidOf(envoy.process),
    async stop() {
      await envoy.stop();
      child.kill();
    },
  };
}
