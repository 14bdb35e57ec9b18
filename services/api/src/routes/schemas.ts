// Request and response schemas of the HTTP API, built on the record schema, for validation,
// serialization and the OpenAPI document.
import { Endpoint, Domain, EnvoyReportSchema, SERVICE_NAME_PATTERN, ServiceName, ServiceRecordSchema, MAX_DOMAINS, MAX_ENDPOINTS } from "@envoyage/registry";
import { Type } from "typebox";

export const NameParams = Type.Object({ name: ServiceName });

const ifMatch = Type.Optional(
  Type.String({ description: 'Expected revision (the ETag of GET, e.g. "12"); "*" requires the service to exist.' }),
);

export const IfMatchHeaders = Type.Object({ "if-match": ifMatch });

export const PutHeaders = Type.Object({
  "if-match": ifMatch,
  "if-none-match": Type.Optional(Type.String({ description: '"*": create the service only if it does not exist yet.' })),
});

const EnvoyCounts = Type.Object({
  connected: Type.Integer({ description: "Envoys connected to the replicas." }),
  acked: Type.Integer({ description: "Of those, how many hold this revision of the service (acknowledged)." }),
});

const ServiceStatus = Type.Object(
  {
    state: Type.Union([Type.Literal("serving"), Type.Literal("invalid"), Type.Literal("conflict"), Type.Literal("pending")], {
      description:
        "serving: the replicas serve this revision; invalid/conflict: they reject it (never pushed); pending: no replica has applied it yet.",
    }),
    problem: Type.Optional(Type.String()),
    conflicts: Type.Optional(Type.Array(Type.Object({ domain: Type.String(), heldBy: Type.String() }))),
    servingRevision: Type.Optional(
      Type.Union([Type.Integer(), Type.Null()], {
        description: "invalid/conflict: the revision Envoys still route instead (the last good one), or null when this service is not routed.",
      }),
    ),
    envoys: EnvoyCounts,
  },
  { additionalProperties: false },
);

export const StoredService = Type.Object(
  {
    name: ServiceName,
    revision: Type.Integer({ description: "KV revision of this record; send it back in If-Match for a safe update." }),
    domains: Type.Optional(Type.Array(Domain, { maxItems: MAX_DOMAINS })),
    endpoints: Type.Optional(Type.Array(Endpoint, { maxItems: MAX_ENDPOINTS })),
    problem: Type.Optional(
      Type.String({ description: "Present instead of domains and endpoints when the stored value is not a valid record." }),
    ),
    status: Type.Optional(ServiceStatus),
  },
  { additionalProperties: false },
);

const LIMIT_PATTERN = "^[1-9][0-9]{0,5}$";

/** How the API says what a query parameter's pattern asks for. */
export const QUERY_PATTERNS_IN_WORDS: Record<string, string> = { [LIMIT_PATTERN]: "must be a whole number from 1 to 999999" };

export const ListQuery = Type.Object(
  {
    limit: Type.Optional(
      Type.String({ pattern: LIMIT_PATTERN, description: "At most this many services: a whole number from 1 to 999999. Without it, every service." }),
    ),
    after: Type.Optional(
      Type.String({
        pattern: SERVICE_NAME_PATTERN,
        maxLength: 63,
        description: "Only services named after this one (the `next` of the previous page).",
      }),
    ),
  },
  { additionalProperties: false },
);

/** No query parameters: one given is refused, not ignored (a script's ?dryRun=true would write). */
export const NoQuery = Type.Object({}, { additionalProperties: false });

export const ServiceList = Type.Object(
  {
    services: Type.Array(StoredService, { description: "In name order." }),
    next: Type.Optional(
      Type.String({ description: "Present when services follow this page (limit): pass it as `after` to get the next page." }),
    ),
  },
  { additionalProperties: false },
);

export const EnvoyList = Type.Object({
  revision: Type.Integer({ description: "The bucket's latest revision: an Envoy holding it is SYNCED." }),
  envoys: Type.Array(
    Type.Object({
      ...Type.Omit(EnvoyReportSchema, ["stream"]).properties,
      status: Type.Union([Type.Literal("SYNCED"), Type.Literal("STALE"), Type.Literal("NACKED"), Type.Literal("DISCONNECTED")]),
      streams: Type.Integer({
        description: "ADS streams open with this node id, over all replicas: more than one when Envoys share the node id (the line shows one of them).",
      }),
    }),
  ),
});

export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    field: Type.Optional(Type.String({ description: "JSON pointer of the invalid field (400)." })),
    domain: Type.Optional(Type.String()),
    heldBy: Type.Optional(Type.String({ description: "Service that holds the domain (409)." })),
    claimLapsesAt: Type.Optional(
      Type.String({ format: "date-time", description: "When a pending claim lapses at the latest, unless its holder is written with the domain (409)." }),
    ),
    currentRevision: Type.Optional(Type.Union([Type.Integer(), Type.Null()], { description: "Stored revision (412)." })),
  }),
});

export { ServiceRecordSchema };
