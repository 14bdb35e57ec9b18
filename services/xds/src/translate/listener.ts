// The one HTTP listener. Its connection manager takes routes from RDS over ADS and ignores the
// port and a trailing dot in the Host header, so "web.example.com:10000" and "web.example.com."
// (a fully qualified name) select web.example.com.
import { ApiVersion } from "@envoyage/proto/envoy/config/core/v3/config_source.js";
import { Listener } from "@envoyage/proto/envoy/config/listener/v3/listener.js";
import { Router } from "@envoyage/proto/envoy/extensions/filters/http/router/v3/router.js";
import {
  HttpConnectionManager,
  HttpConnectionManager_CodecType,
} from "@envoyage/proto/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.js";
import { Any } from "@envoyage/proto/google/protobuf/any.js";
import { LISTENER_NAME, ROUTE_CONFIG_NAME, type TranslateOptions } from "./names.js";

export const HCM_TYPE_URL =
  "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
export const ROUTER_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

function pack(typeUrl: string, bytes: Uint8Array): Any {
  return Any.fromPartial({ typeUrl, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
}

export function translateListener(options: TranslateOptions): Listener {
  const connectionManager = HttpConnectionManager.fromPartial({
    statPrefix: LISTENER_NAME,
    codecType: HttpConnectionManager_CodecType.AUTO,
    stripAnyHostPort: true,
    stripTrailingHostDot: true,
    rds: { routeConfigName: ROUTE_CONFIG_NAME, configSource: { ads: {}, resourceApiVersion: ApiVersion.V3 } },
    httpFilters: [
      {
        name: "envoy.filters.http.router",
        typedConfig: pack(ROUTER_TYPE_URL, Router.encode(Router.fromPartial({})).finish()),
      },
    ],
  });
  return Listener.fromPartial({
    name: LISTENER_NAME,
    address: { socketAddress: { address: options.listenerAddress, portValue: options.listenerPort } },
    filterChains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typedConfig: pack(HCM_TYPE_URL, HttpConnectionManager.encode(connectionManager).finish()),
          },
        ],
      },
    ],
  });
}
