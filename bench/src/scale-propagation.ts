// 4. Scale, through a real Envoy: the changes of propagation (1.) once Envoy already holds 10,000
// services. What an operator with a large registry waits for, and how much of it is Envoy's own
// work on a large route configuration and cluster list.
import { startFloor } from "./floor.js";
import { floor, throughStack, type PathSamples } from "./propagation.js";
import type { Section } from "./report.js";
import { distribution, ms } from "./stats.js";

const PROTOCOLS = ["sotw", "delta"] as const;
const CHANGES = [
  ["endpoint", "endpoint change"],
  ["newService", "new service"],
] as const;

export async function propagationAtScale(quick: boolean): Promise<Section> {
  const services = quick ? 2_000 : 10_000;
  const changes = quick ? 10 : 30;
  const rows: (string | number)[][] = [];
  const p50 = new Map<string, number>();
  const routeUpdates: string[] = [];
  for (const protocol of PROTOCOLS) {
    console.log(`[bench] scale: propagation with ${services} services, ${protocol}`);
    const bare = await floor(protocol, changes, startFloor, services);
    const { kv, api, routeUpdateMs } = await throughStack(protocol, changes, services);
    routeUpdates.push(`${routeUpdateMs === undefined ? "?" : ms(routeUpdateMs)} ms (${protocol})`);
    const paths: [string, PathSamples][] = [
      ["floor: ADS server fed directly", bare],
      ["KV put → Envoy", kv],
      ["API PUT → Envoy", api],
    ];
    for (const [change, label] of CHANGES) {
      const floorP50 = distribution(bare[change]).p50;
      for (const [path, samples] of paths) {
        const d = distribution(samples[change]);
        p50.set(`${change} ${protocol} ${path}`, d.p50);
        rows.push([label, protocol, path, d.n, ms(d.p50), ms(d.p95), ms(d.p99), ms(d.max), (d.p50 / floorP50).toFixed(2)]);
      }
    }
  }
  const of = (change: string, path: string) => PROTOCOLS.map((protocol) => ms(p50.get(`${change} ${protocol} ${path}`) ?? Number.NaN)).join(" / ");
  return {
    title: `4. Scale: one change through a real Envoy holding ${services.toLocaleString("en-US")} services`,
    description:
      `Propagation (1.) again, ${changes} changes of each kind per path, once Envoy holds ${services.toLocaleString("en-US")} services besides ` +
      "web.example.com (each with a domain and a cluster of its own, written to the bucket before the changes; the floor is pushed " +
      "them at once). The stack runs as in 1.: nats-server with sync_interval: always, the API, two replicas, one Envoy.",
    table: { header: ["change", "mode", "path", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "p50 / floor p50"], rows },
    notes: [
      `An endpoint change is one ClusterLoadAssignment whatever the registry's size: ${of("endpoint", "API PUT → Envoy")} ms at p50 ` +
        `through the API (${PROTOCOLS.join(" / ")}), against ${of("endpoint", "floor: ADS server fed directly")} ms fed directly.`,
      `A new service changes the route configuration, which holds every service's virtual host: Envoy gets it whole and builds ` +
        `every route again (its own rds update_duration, p50 in this run: ${routeUpdates.join(", ")}), besides decoding it. In ` +
        "state of the world Envoy also gets every cluster again (the protocol sends the whole list), which is why Delta is faster " +
        `here: ${of("newService", "API PUT → Envoy")} ms at p50 through the API, against ${of("newService", "floor: ADS server fed directly")} ms ` +
        "fed directly, where the floor is Envoy's own work. With thousands of services, run Envoy on Delta (api_type: DELTA_GRPC).",
    ],
  };
}
