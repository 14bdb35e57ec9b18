// A real Envoy fed by a control plane directly: no API, no NATS, no registry rules. What a push to
// Envoy costs on this machine, measured in the same run as the stack, so the stack's figures can
// be read against it. Two feeders: Envoyage's own ADS server (floor-server.ts), and the
// go-control-plane peer, to tell Envoyage's push from Envoy's own cost.
import { fork } from "node:child_process";
import type { ServiceRecord } from "@envoyage/registry";
import { startEnvoy } from "@envoyage/test-support";
import { nextMessage, pidOf } from "./proc.js";
import { goControlPlane } from "./targets.js";

export interface Floor {
  /** Serves these services (added or changed) as one push; resolves once handed to the control plane. */
  push(services: Record<string, ServiceRecord>): Promise<void>;
  envoyPid: number;
  stop(): Promise<void>;
}

export async function startFloor(protocol: "sotw" | "delta", listenerPort: number): Promise<Floor> {
  const child = fork(new URL("./floor-server.js", import.meta.url), [String(listenerPort)]);
  const { port } = await nextMessage<{ port: number }>(child);
  const envoy = await startEnvoy({ xdsPorts: [port], protocol }).catch((error: unknown) => {
    child.kill();
    throw error;
  });
  return {
    push: async (services) => void child.send({ services }),
    envoyPid: pidOf(envoy.process),
    async stop() {
      await envoy.stop();
      child.kill();
    },
  };
}

/** The go-control-plane peer's LinearCache as the feeder: it pushes only the resources that changed, as Envoyage does. */
export async function startPeerFloor(protocol: "sotw" | "delta", listenerPort: number): Promise<Floor> {
  const peer = await goControlPlane("linear", listenerPort);
  const envoy = await startEnvoy({ xdsPorts: [peer.port], protocol }).catch(async (error: unknown) => {
    await peer.stop();
    throw error;
  });
  let registry: Record<string, ServiceRecord> = {};
  return {
    push: (services) => {
      registry = { ...registry, ...services };
      return peer.load(registry);
    },
    envoyPid: pidOf(envoy.process),
    async stop() {
      await envoy.stop();
      await peer.stop();
    },
  };
}
