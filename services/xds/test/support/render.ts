// Renders generated protobuf messages as readable JSON for golden files: Any fields whose type is
// known are decoded in place, as Envoy's own config dump shows them ({"@type": ..., ...}).
import { Router } from "@envoyage/proto/envoy/extensions/filters/http/router/v3/router.js";
import { HttpConnectionManager } from "@envoyage/proto/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.js";
import { HCM_TYPE_URL, ROUTER_TYPE_URL } from "../../src/translate/listener.js";

interface Codec {
  decode(bytes: Uint8Array): unknown;
  toJSON(message: never): unknown;
}

const codecs = new Map<string, Codec>([
  [HCM_TYPE_URL, HttpConnectionManager as Codec],
  [ROUTER_TYPE_URL, Router as Codec],
]);

export function expandAnys(json: unknown): unknown {
  if (Array.isArray(json)) return json.map(expandAnys);
  if (json === null || typeof json !== "object") return json;
  const object = json as Record<string, unknown>;
  const codec = typeof object["typeUrl"] === "string" ? codecs.get(object["typeUrl"]) : undefined;
  // proto3 JSON omits an empty value, as for the Router filter's empty config.
  const value = object["value"] ?? "";
  if (codec && typeof value === "string") {
    const inner = codec.toJSON(codec.decode(Buffer.from(value, "base64")) as never);
    return { "@type": object["typeUrl"], ...(expandAnys(inner) as object) };
  }
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, expandAnys(value)]));
}
