// The service record: the one schema that the HTTP API validates bodies with, the xDS replicas
// decode KV values with, and the OpenAPI document publishes.
import { isIP } from "node:net";
import { Type, type Static } from "typebox";

/** A lowercase DNS label: the `<name>` in `services.<name>` and in `/v1/services/{name}`. */
export const SERVICE_NAME_PATTERN = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

const LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
/** A lowercase hostname, optionally with a leading `*.` wildcard label. */
export const DOMAIN_PATTERN = `^(\\*\\.)?(${LABEL}\\.)*${LABEL}$`;

/** ajv format name for endpoint addresses; registered by {@link addRecordFormats}. */
export const ADDRESS_FORMAT = "ip-or-hostname";

// Limits keep one record well inside Envoy's and NATS's limits (a KV value is one message).
export const MAX_DOMAINS = 100;
export const MAX_ENDPOINTS = 1000;

export const ServiceName = Type.String({
  pattern: SERVICE_NAME_PATTERN,
  maxLength: 63,
  description: "Service name: a lowercase DNS label.",
  examples: ["web"],
});

/** Longest hostname DNS allows; domains and endpoint hostnames alike. */
export const MAX_HOSTNAME_LENGTH = 253;

export const Domain = Type.String({
  pattern: DOMAIN_PATTERN,
  maxLength: MAX_HOSTNAME_LENGTH,
  description:
    "A lowercase hostname that selects this service by the Host header (port ignored); a leading `*.` matches any subdomain.",
  examples: ["web.example.com", "*.example.org"],
});

export const Endpoint = Type.Object(
  {
    address: Type.String({
      format: ADDRESS_FORMAT,
      minLength: 1,
      maxLength: MAX_HOSTNAME_LENGTH,
      description:
        "IPv4 or IPv6 literal (delivered by EDS) or a hostname (the service then gets a DNS-resolved cluster).",
      examples: ["10.0.0.7", "web-a"],
    }),
    port: Type.Integer({ minimum: 1, maximum: 65535, examples: [5678] }),
  },
  { additionalProperties: false },
);

export const ServiceRecordSchema = Type.Object(
  {
    domains: Type.Array(Domain, { minItems: 1, maxItems: MAX_DOMAINS, uniqueItems: true }),
    endpoints: Type.Array(Endpoint, { minItems: 1, maxItems: MAX_ENDPOINTS, uniqueItems: true }),
  },
  {
    additionalProperties: false,
    description:
      "A service: the domains it serves and the upstream endpoints requests go to. The same JSON is the KV value at services.<name>.",
    examples: [{ domains: ["web.example.com"], endpoints: [{ address: "127.0.0.1", port: 5678 }] }],
  },
);

export type ServiceRecord = Static<typeof ServiceRecordSchema>;
export type Endpoint = Static<typeof Endpoint>;

const HOST_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** True for an IPv4/IPv6 literal (no zone index) or a hostname whose last label is not numeric. */
export function isAddress(value: string): boolean {
  if (value.includes("%")) return false;
  if (isIP(value) !== 0) return true;
  if (value.length > MAX_HOSTNAME_LENGTH) return false;
  const labels = value.split(".");
  // "999.1.1.1" is neither an IP nor a resolvable name: a numeric last label is never a TLD.
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? "")) return false;
  return labels.every((label) => HOST_LABEL.test(label));
}

/** True when the endpoint address is an IP literal, which Envoy can take in EDS. */
export function isIpLiteral(address: string): boolean {
  return isIP(address) !== 0;
}

/** The canonical JSON of a record: the fields in schema order, nothing else. */
export function encodeRecord(record: ServiceRecord): string {
  return JSON.stringify({
    domains: record.domains,
    endpoints: record.endpoints.map((e) => ({ address: e.address, port: e.port })),
  });
}
