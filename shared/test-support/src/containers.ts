// The stack in containers, for users with a Docker engine (ENVOYAGE_TEST_STACK=containers):
// NATS, the API and two xDS replicas (the project's Dockerfile) and Envoy (the official image)
// on one Docker network, as docker-compose.yaml runs them. The upstreams stay in the test
// process and are exposed to the containers, so tests can count what reaches them. CI machines
// have no Docker engine; this path is type-checked with the rest and shares every test.
import { join } from "node:path";
import { GenericContainer, getContainerRuntimeClient, Network, TestContainers, Wait, type StartedNetwork, type StartedTestContainer } from "testcontainers";
import { bootstrapText, envoyAdmin, type Envoy } from "./envoy.js";
import type { ApiProcess, XdsProcess } from "./envoyage.js";
import type { NatsCluster } from "./nats-cluster.js";
import type { NatsServer } from "./nats.js";
import type { Exit, Lifecycle } from "./process.js";
import type { StackOptions, StackParts } from "./stack.js";
import { REPO_ROOT } from "./tools.js";
import { startUpstream } from "./upstream.js";
import { waitFor } from "./wait.js";

const NATS_IMAGE = "nats:2.15";
const ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0";
const IMAGE_TAG = "envoyage:test";
/** How containers reach ports of the test process (TestContainers.exposeHostPorts). */
const HOST_FROM_CONTAINERS = "host.testcontainers.internal";
const MAX_OUTPUT = 256 * 1024;

/** A container behind the Lifecycle tests use for processes: signals, pause, logs. */
class ContainerLifecycle implements Lifecycle {
  readonly container: StartedTestContainer;
  #running = true;
  #output = "";

  constructor(container: StartedTestContainer) {
    this.container = container;
    void container.logs().then((stream) =>
      stream.on("data", (chunk: Buffer | string) => {
        this.#output = (this.#output + chunk.toString()).slice(-MAX_OUTPUT);
      }),
    );
  }

  get running(): boolean {
    return this.#running;
  }

  output(): string {
    return this.#output;
  }

  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<Exit> {
    const docker = await this.#docker();
    await docker.kill({ signal }).catch(() => undefined);
    const exited = docker.wait() as Promise<{ StatusCode: number }>;
    const timer = setTimeout(() => void docker.kill({ signal: "SIGKILL" }).catch(() => undefined), timeoutMs);
    const { StatusCode } = await exited;
    clearTimeout(timer);
    this.#running = false;
    return { code: StatusCode, signal: null };
  }

  kill(): Promise<Exit> {
    return this.stop("SIGKILL");
  }

  async pause(): Promise<void> {
    await (await this.#docker()).pause();
  }

  async resume(): Promise<void> {
    await (await this.#docker()).unpause();
  }

  /** Starts the stopped container again (same name, network aliases and volumes). */
  async start(): Promise<void> {
    await (await this.#docker()).start();
    this.#running = true;
  }

  /** The host port mapped to `port` now (it may change when the container is started again). */
  async mappedPort(port: number): Promise<number> {
    const info = await (await this.#docker()).inspect();
    const binding = info.NetworkSettings.Ports[`${port}/tcp`]?.[0];
    if (!binding) throw new Error(`container port ${port} is not mapped`);
    return Number(binding.HostPort);
  }

  async #docker() {
    return (await getContainerRuntimeClient()).container.getById(this.container.getId());
  }
}

function natsConfig(name: string, nodes: string[]): string {
  const cluster =
    nodes.length > 1
      ? `cluster { name: "envoyage", listen: "0.0.0.0:6222", routes: [${nodes.filter((n) => n !== name).map((n) => `"nats-route://${n}:6222"`).join(", ")}] }`
      : "";
  // sync_interval: always, as in deploy/nats.conf: every acknowledged write is on disk first.
  return [`server_name: "${name}"`, `listen: "0.0.0.0:4222"`, `jetstream { store_dir: "/data", sync_interval: always }`, cluster].join("\n");
}

async function startNatsContainers(network: StartedNetwork, count: number) {
  const names = count === 1 ? ["nats"] : Array.from({ length: count }, (_, i) => `nats-${i + 1}`);
  const started: { name: string; lifecycle: ContainerLifecycle }[] = [];
  for (const name of names) {
    const container = await new GenericContainer(NATS_IMAGE)
      .withNetwork(network)
      .withNetworkAliases(name)
      .withCopyContentToContainer([{ content: natsConfig(name, names), target: "/etc/nats/nats.conf" }])
      .withCommand(["-c", "/etc/nats/nats.conf"])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    started.push({ name, lifecycle: new ContainerLifecycle(container) });
  }
  return { names, started, internalUrl: names.map((n) => `nats://${n}:4222`).join(",") };
}

export async function startContainerParts(options: StackOptions): Promise<StackParts> {
  const network = await new Network().start();
  await GenericContainer.fromDockerfile(REPO_ROOT).build(IMAGE_TAG, { deleteOnExit: false });
  const natsNodes = await startNatsContainers(network, options.natsCluster ?? 1);
  const hostUrl = (c: ContainerLifecycle) => `nats://${c.container.getHost()}:${c.container.getMappedPort(4222)}`;
  const natsUrl = natsNodes.started.map(({ lifecycle }) => hostUrl(lifecycle)).join(",");
  const service = () => new GenericContainer(IMAGE_TAG).withNetwork(network);

  const api = await service()
    .withCommand(["node", "services/api/dist/src/main.js"])
    .withEnvironment({ NATS_URL: natsNodes.internalUrl, API_PORT: "8080", ENVOYAGE_BUCKET_REPLICAS: String(options.natsCluster ?? 1) })
    .withExposedPorts(8080)
    .withWaitStrategy(Wait.forHttp("/readyz", 8080).forStatusCode(200))
    .start();
  const apiLifecycle = new ContainerLifecycle(api);
  const apiProcess: ApiProcess = {
    process: apiLifecycle,
    url: `http://${api.getHost()}:${api.getMappedPort(8080)}`,
    port: api.getMappedPort(8080),
    stop: async () => void (await apiLifecycle.stop()),
    kill: async () => void (await apiLifecycle.kill()),
  };

  const startReplica = async (index: number): Promise<XdsProcess> => {
    const xdsPort = 9090 + index;
    const httpPort = 9190 + index;
    const container = await service()
      .withNetworkAliases(`xds-${index + 1}`)
      .withCommand(["services/xds/bin/envoyage-xds"])
      .withEnvironment({
        NATS_URL: natsNodes.internalUrl,
        REPLICA_ID: `xds-${index + 1}`,
        XDS_PORT: String(xdsPort),
        XDS_HTTP_PORT: String(httpPort),
        LISTENER_PORT: "10000",
        ...options.xdsEnv,
      })
      .withExposedPorts(xdsPort, httpPort)
      .withWaitStrategy(Wait.forHttp("/healthz", httpPort))
      .start();
    const lifecycle = new ContainerLifecycle(container);
    const statusUrl = `http://${container.getHost()}:${container.getMappedPort(httpPort)}`;
    return {
      process: lifecycle,
      xdsPort: container.getMappedPort(xdsPort),
      httpPort: container.getMappedPort(httpPort),
      statusUrl,
      ready: (timeoutMs = 10_000) =>
        waitFor(`replica xds-${index + 1} to be ready`, async () => ((await fetch(`${statusUrl}/readyz`)).ok ? true : undefined), { timeoutMs }).then(
          () => undefined,
        ),
      stop: async () => void (await lifecycle.stop()),
      kill: async () => void (await lifecycle.kill()),
    };
  };
  const replicas = [await startReplica(0), await startReplica(1)];
  await Promise.all(replicas.map((r) => r.ready()));

  const upstreams = { A: await startUpstream("A"), B: await startUpstream("B") };
  await TestContainers.exposeHostPorts(upstreams.A.port, upstreams.B.port);
  upstreams.A.address = HOST_FROM_CONTAINERS;
  upstreams.B.address = HOST_FROM_CONTAINERS;

  const bootstrap = await bootstrapText({ source: join(REPO_ROOT, "envoy", "bootstrap.compose.yaml"), protocol: options.protocol });
  const envoyContainer = await new GenericContainer(ENVOY_IMAGE)
    .withNetwork(network)
    .withCopyContentToContainer([{ content: bootstrap, target: "/etc/envoy/envoy.yaml" }])
    .withCommand(["envoy", "-c", "/etc/envoy/envoy.yaml", "--concurrency", "1", "-l", "warning"])
    .withExposedPorts(9901, 10000)
    .withWaitStrategy(Wait.forHttp("/ready", 9901).forStatusCode(200))
    .start();
  const envoyLifecycle = new ContainerLifecycle(envoyContainer);
  const envoy: Envoy = {
    ...envoyAdmin(`http://${envoyContainer.getHost()}:${envoyContainer.getMappedPort(9901)}`),
    process: envoyLifecycle,
    stop: async () => void (await envoyLifecycle.stop()),
  };

  const nats: NatsServer | undefined =
    natsNodes.started.length === 1
      ? singleNats(natsNodes.started[0]!.lifecycle, hostUrl(natsNodes.started[0]!.lifecycle))
      : undefined;
  const cluster: NatsCluster | undefined = nats
    ? undefined
    : {
        nodes: natsNodes.started.map(({ name, lifecycle }) => ({
          name,
          url: hostUrl(lifecycle),
          port: lifecycle.container.getMappedPort(4222),
          process: lifecycle,
          restart: () => lifecycle.start(),
          kill: async () => void (await lifecycle.kill()),
        })),
        urls: natsUrl,
        async leaderOf(stream) {
          const { connect } = await import("@nats-io/transport-node");
          const { jetstreamManager } = await import("@nats-io/jetstream");
          const nc = await connect({ servers: natsUrl.split(",") });
          try {
            const leader = (await (await jetstreamManager(nc)).streams.info(stream)).cluster?.leader;
            const node = this.nodes.find((n) => n.name === leader || leader?.endsWith(n.name));
            if (!node) throw new Error(`${stream} has no leader yet`);
            return node;
          } finally {
            await nc.close();
          }
        },
        async stop() {
          for (const { lifecycle } of natsNodes.started) await lifecycle.container.stop();
        },
      };

  return {
    protocol: options.protocol ?? "sotw",
    nats,
    cluster,
    natsUrl,
    api: apiProcess,
    replicas,
    envoy,
    upstreams,
    listenerPort: envoyContainer.getMappedPort(10000),
    async restartReplica(index) {
      replicas[index] = await startReplica(index);
      await replicas[index].ready();
      return replicas[index];
    },
    async teardown() {
      for (const lifecycle of [envoyLifecycle, ...replicas.map((r) => r.process as ContainerLifecycle), apiLifecycle]) {
        await lifecycle.container.stop();
      }
      for (const { lifecycle } of natsNodes.started) await lifecycle.container.stop();
      await network.stop();
      await upstreams.A.close();
      await upstreams.B.close();
      return [upstreams.A.port, upstreams.B.port];
    },
  };
}

function singleNats(lifecycle: ContainerLifecycle, url: string): NatsServer {
  const server: NatsServer = {
    url,
    port: lifecycle.container.getMappedPort(4222),
    storeDir: "/data",
    process: lifecycle,
    async restart() {
      await lifecycle.start();
      server.port = await lifecycle.mappedPort(4222);
      server.url = `nats://${lifecycle.container.getHost()}:${server.port}`;
      await waitFor("NATS to be ready again", () => (lifecycle.output().split("Server is ready").length > 2 ? true : undefined));
    },
    stop: async () => void (await lifecycle.stop()),
    kill: async () => void (await lifecycle.kill()),
  };
  return server;
}
