// A real Envoy, bootstrapped from the project's envoy/bootstrap.yaml with the test's own ports:
// admin on a free port (read back from --admin-address-path), xDS pointed at the test replicas.
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { ManagedProcess, type Lifecycle } from "./process.js";
import { findTool, REPO_ROOT } from "./tools.js";
import { waitFor } from "./wait.js";

export interface EnvoyOptions {
  /** Ports of the xDS replicas on 127.0.0.1 (the endpoints of xds_cluster). */
  xdsPorts: number[];
  nodeId?: string;
  /** Bootstrap to render; envoy/bootstrap.yaml by default. */
  bootstrap?: string;
  /** ADS variant: state of the world (GRPC) unless delta (DELTA_GRPC) is asked for, whatever the bootstrap says. */
  protocol?: "sotw" | "delta";
  /** ADS over TLS: the CA that signed the replicas' certificate, and Envoy's own certificate for mutual TLS. */
  xdsTls?: XdsTls;
}

export interface XdsTls {
  caFile: string;
  certFile?: string;
  keyFile?: string;
}

export interface Envoy {
  adminUrl: string;
  process: Lifecycle;
  /** Counters and gauges from /stats, by name. */
  stats(): Promise<Map<string, number>>;
  stat(name: string): Promise<number>;
  /** Seconds since this Envoy process started (server.uptime). */
  uptime(): Promise<number>;
  /** What Envoy holds: clusters, virtual hosts (name → domains) and endpoints (cluster → "ip:port"). */
  config(): Promise<EnvoyConfig>;
  /** Just the virtual hosts (a lighter read than config()). */
  virtualHosts(): Promise<Record<string, string[]>>;
  stop(): Promise<void>;
}

export interface EnvoyConfig {
  clusters: string[];
  virtualHosts: Record<string, string[]>;
  endpoints: Record<string, string[]>;
}

interface ConfigDump {
  configs: {
    dynamic_active_clusters?: { cluster: { name: string } }[];
    dynamic_route_configs?: { route_config: { virtual_hosts?: { name: string; domains: string[] }[] } }[];
    dynamic_endpoint_configs?: {
      endpoint_config: {
        cluster_name: string;
        endpoints?: { lb_endpoints?: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[];
      };
    }[];
  }[];
}

interface Bootstrap {
  node: { id: string };
  dynamic_resources: { ads_config: { api_type: string } };
  admin: { address: { socket_address: { port_value: number } } };
  static_resources: { clusters: { name: string; load_assignment: { endpoints: unknown[] }; transport_socket?: unknown }[] };
}

export interface BootstrapOptions {
  /** Bootstrap to render; envoy/bootstrap.yaml by default. */
  source?: string;
  nodeId?: string;
  protocol?: "sotw" | "delta";
  /** Replaces xds_cluster's endpoints. */
  xds?: { address: string; port: number }[];
  /** Replaces the admin port (0: any free port). */
  adminPort?: number;
  /** Adds a TLS transport socket to xds_cluster, as the README shows it. */
  xdsTls?: XdsTls;
}

/** A project bootstrap with the test's node id, ADS variant, xDS endpoints and admin port. */
export async function bootstrapText(options: BootstrapOptions): Promise<string> {
  const source = options.source ?? join(REPO_ROOT, "envoy", "bootstrap.yaml");
  const bootstrap = parse(await readFile(source, "utf8")) as Bootstrap;
  bootstrap.node.id = options.nodeId ?? "envoyage-test";
  // Tests say which variant they run: state of the world unless they ask for delta.
  bootstrap.dynamic_resources.ads_config.api_type = options.protocol === "delta" ? "DELTA_GRPC" : "GRPC";
  if (options.adminPort !== undefined) bootstrap.admin.address.socket_address.port_value = options.adminPort;
  const xdsCluster = () => {
    const xds = bootstrap.static_resources.clusters.find((c) => c.name === "xds_cluster");
    if (!xds) throw new Error(`${source} has no xds_cluster`);
    return xds;
  };
  if (options.xds) {
    const xds = xdsCluster();
    xds.load_assignment.endpoints = [
      { lb_endpoints: options.xds.map(({ address, port }) => ({ endpoint: { address: { socket_address: { address, port_value: port } } } })) },
    ];
  }
  if (options.xdsTls) xdsCluster().transport_socket = xdsTransportSocket(options.xdsTls);
  return stringify(bootstrap);
}

/** The transport socket the README's "Your own Envoys" shows for ADS over TLS. */
function xdsTransportSocket({ caFile, certFile, keyFile }: XdsTls): unknown {
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      common_tls_context: {
        alpn_protocols: ["h2"],
        validation_context: {
          trusted_ca: { filename: caFile },
          match_typed_subject_alt_names: [{ san_type: "IP_ADDRESS", matcher: { exact: "127.0.0.1" } }],
        },
        ...(certFile && keyFile ? { tls_certificates: [{ certificate_chain: { filename: certFile }, private_key: { filename: keyFile } }] } : {}),
      },
    },
  };
}

export async function startEnvoy(options: EnvoyOptions): Promise<Envoy> {
  const binary = findTool("envoy");
  const dir = await mkdtemp(join(tmpdir(), "envoyage-envoy-"));
  const bootstrap = join(dir, "bootstrap.yaml");
  await writeFile(
    bootstrap,
    await bootstrapText({
      source: options.bootstrap,
      nodeId: options.nodeId,
      protocol: options.protocol,
      adminPort: 0,
      xds: options.xdsPorts.map((port) => ({ address: "127.0.0.1", port })),
      xdsTls: options.xdsTls,
    }),
  );
  const adminFile = join(dir, "admin-address");
  const child = ManagedProcess.start({
    name: "envoy",
    command: binary,
    args: [
      "-c", bootstrap,
      "--disable-hot-restart",
      "--concurrency", "1",
      "--admin-address-path", adminFile,
      "-l", "warning",
    ],
  });
  const address = await waitFor("Envoy's admin address", async () => {
    if (!child.running) throw new Error(`envoy exited:\n${child.output()}`);
    const text = await readFile(adminFile, "utf8").catch(() => "");
    return text.trim() || undefined;
  });
  return { ...envoyAdmin(`http://${address}`), process: child, stop: async () => void (await child.stop()) };
}

/** Reads an Envoy through its admin interface (for Envoys in processes or containers). */
export function envoyAdmin(adminUrl: string): Omit<Envoy, "process" | "stop"> {
  const stats = async () => {
    const text = await (await fetch(`${adminUrl}/stats`)).text();
    const out = new Map<string, number>();
    for (const line of text.split("\n")) {
      const match = /^([^:]+): (\d+)$/.exec(line);
      if (match) out.set(match[1]!, Number(match[2]));
    }
    return out;
  };
  return {
    adminUrl,
    stats,
    async stat(name) {
      const value = (await stats()).get(name);
      if (value === undefined) throw new Error(`Envoy has no stat ${name}`);
      return value;
    },
    async uptime() {
      const info = (await (await fetch(`${adminUrl}/server_info`)).json()) as { uptime_current_epoch: string };
      return Number.parseFloat(info.uptime_current_epoch);
    },
    async virtualHosts() {
      const dump = (await (await fetch(`${adminUrl}/config_dump?resource=dynamic_route_configs`)).json()) as {
        configs: { route_config: { virtual_hosts?: { name: string; domains: string[] }[] } }[];
      };
      return Object.fromEntries(dump.configs.flatMap((c) => (c.route_config.virtual_hosts ?? []).map((v) => [v.name, v.domains])));
    },
    async config() {
      const dump = (await (await fetch(`${adminUrl}/config_dump?include_eds`)).json()) as ConfigDump;
      const out: EnvoyConfig = { clusters: [], virtualHosts: {}, endpoints: {} };
      for (const section of dump.configs) {
        for (const { cluster } of section.dynamic_active_clusters ?? []) out.clusters.push(cluster.name);
        for (const { route_config } of section.dynamic_route_configs ?? []) {
          for (const host of route_config.virtual_hosts ?? []) out.virtualHosts[host.name] = host.domains;
        }
        for (const { endpoint_config } of section.dynamic_endpoint_configs ?? []) {
          out.endpoints[endpoint_config.cluster_name] = (endpoint_config.endpoints ?? []).flatMap((locality) =>
            (locality.lb_endpoints ?? []).map((e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`),
          );
        }
      }
      out.clusters.sort();
      return out;
    },
  };
}

