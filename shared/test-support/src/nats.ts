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

/** A nats-server this process started, whose config it can change. */
export interface LocalNatsServer extends NatsServer {
  /** Rewrites the config's extra lines (authorization, tls) and has the running server reload it. */
  reload(config: string): Promise<void>;
}

export interface NatsOptions {
  port?: number;
  storeDir?: string;
  durable?: boolean;
  /** Extra lines of nats-server config, such as an authorization or a tls block. */
  config?: string;
}

export async function startNats(options: NatsOptions = {}): Promise<LocalNatsServer> {
  const binary = findTool("nats-server");
  const port = options.port ?? (await freePort());
  const storeDir = options.storeDir ?? (await mkdtemp(join(tmpdir(), "envoyage-nats-")));
  const configFile = join(storeDir, "nats.conf");
  // sync_interval: always makes every acknowledged write durable before the ack, as in
  // production; `durable: false` keeps nats-server's default (benchmarks compare the two).
  const sync = options.durable === false ? "" : ", sync_interval: always";
  const writeConfig = (extra: string) => writeFile(configFile, `listen: "127.0.0.1:${port}"\njetstream { store_dir: "${storeDir}"${sync} }\n${extra}\n`);
  await writeConfig(options.config ?? "");
  const launch = async () => {
    const child = ManagedProcess.start({ name: "nats-server", command: binary, args: ["-c", configFile] });
    await waitFor(`nats-server on port ${port}`, () => {
      if (!child.running) throw new Error(`nats-server exited:\n${child.output()}`);
      return child.output().includes("Server is ready") ? true : undefined;
    });
    return child;
  };
  let child = await launch();
  const server: LocalNatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    process: child,
    async restart() {
      server.process = child = await launch();
    },
    async reload(config: string) {
      await writeConfig(config);
      const reloads = server.process.output().split("Reloaded server configuration").length;
      process.kill(child.pid, "SIGHUP");
      await waitFor("nats-server to reload its config", () => {
        const output = server.process.output();
        if (output.slice(output.lastIndexOf("Reloading server configuration")).includes("Failed to reload")) throw new Error(`nats-server refused the new config:\n${output}`);
        return output.split("Reloaded server configuration").length > reloads ? true : undefined;
      });
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
