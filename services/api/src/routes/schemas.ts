// Request and response schemas of the HTTP API, built on the record schema, for validation,
// serialization and the OpenAPI document.
import { Endpoint, Domain, ServiceName, ServiceRecordSchema, MAX_DOMAINS, MAX_ENDPOINTS } from "@envoyage/registry";
import { Type } from "typebox";

export const NameParams = Type.Object({ name: ServiceName });

export const IfMatchHeaders = Type.Object({
  "if-match": Type.Optional(
    Type.String({ description: 'Expected revision (the ETag of GET, e.g. "12"); "*" requires the service to exist.' }),
  ),
});

export const StoredService = Type.Object(
  {
    name: ServiceName,
    revision: Type.Integer({ description: "KV revision of this record; send it back in If-Match for a safe update." }),
    domains: Type.Optional(Type.Array(Domain, { maxItems: MAX_DOMAINS })),
    endpoints: Type.Optional(Type.Array(Endpoint, { maxItems: MAX_ENDPOINTS })),
    problem: Type.Optional(
      Type.String({ description: "Present instead of domains and endpoints when the stored value is not a valid record." }),
    ),
  },
  { additionalProperties: false },
);

export const ServiceList = Type.Object({ services: Type.Array(StoredService) }, { additionalProperties: false });

export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    field: Type.Optional(Type.String({ description: "JSON pointer of the invalid field (400)." })),
    domain: Type.Optional(Type.String()),
    heldBy: Type.Optional(Type.String({ description: "Service that holds the domain (409)." })),
    currentRevision: Type.Optional(Type.Union([Type.Integer(), Type.Null()], { description: "Stored revision (412)." })),
  }),
});

export { ServiceRecordSchema };
