// Names of the resources Envoyage creates besides the per-service ones. They contain "_", which
// no service name (a DNS label) can, so they never collide with a service's cluster.
export const LISTENER_NAME = "envoyage_http";
export const ROUTE_CONFIG_NAME = "envoyage_http";

export interface TranslateOptions {
  /** Address Envoy's HTTP listener binds (LISTENER_ADDRESS). */
  listenerAddress: string;
  /** Port of Envoy's HTTP listener (LISTENER_PORT). */
  listenerPort: number;
}
