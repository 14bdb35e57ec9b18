// A real nats-server with JetStream on a free loopback port, file storage in a temp folder.
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { ManagedProcess, type Lifecycle } from "./process.js";
import { findTool } from "./tools.js";
import { waitFor } from "./wait.js";

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  process: Lifecycle;
  /** Starts the server again on the same port and storage (after stop or kill). */
  restart(): Promise<void>;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export async function startNats(options: { port?: number; storeDir?: string; durable?: boolean } = {}): Promise<NatsServer> {
  const binary = findTool("nats-server");
  const port = options.port ?? (await freePort());
  const storeDir = options.storeDir ?? (await mkdtemp(join(tmpdir(), "envoyage-nats-")));
  const configFile = join(storeDir, "nats.conf");
  // sync_interval: always makes every acknowledged write durable before the ack, as in
  // production; `durable: false` keeps nats-server's default (benchmarks compare the two).
  const sync = options.durable === false ? "" : ", sync_interval: always";
  await writeFile(configFile, `listen: "127.0.0.1:${port}"\njetstream { store_dir: "${storeDir}"${sync} }\n`);
  const launch = async () => {
    const child = ManagedProcess.start({ name: "nats-server", command: binary, args: ["-c", configFile] });
    await waitFor(`nats-server on port ${port}`, () => {
      if (!child.running) throw new Error(`nats-server exited:\n${child.output()}`);
      return child.output().includes("Server is ready") ? true : undefined;
    });
    return child;
  };
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    process: await launch(),
    async restart() {
      server.process = await launch();
    },
    async stop() {
      await server.process.stop();
    },
    async kill() {
      await server.process.kill();
    },
  };
  return server;
}
