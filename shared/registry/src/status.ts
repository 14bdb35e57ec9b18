// Sync status: what each replica publishes about itself and the Envoys connected to it, in a KV
// bucket of its own (ENVOYAGE_STATUS_BUCKET, default "envoyage-status"). It is memory-backed and
// every entry expires unless refreshed, so the entries of a replica that died disappear by
// themselves. The API reads it for GET /v1/envoys and the status of each service.
//
//   replicas.<replica>             ReplicaReport
//   envoys.<replica>.<page>        EnvoyPage: the replica's ADS streams, in pages of at most
//                                  STATUS_PAGE_BYTES of JSON (<page> counts from 0)
//   rejected.<replica>.<page>      RejectedPage: the services whose latest record the replica
//                                  does not serve, and why, in pages as above
//
// <replica> is base64url (KV keys allow few characters). Envoys go in pages, not an entry each,
// because a config change changes what every Envoy holds: a thousand Envoys are then a few
// writes, not a thousand. Rejected services go in pages so that a registry with thousands of bad
// records never makes an entry larger than NATS takes (1 MB by default).
import { StorageType, type JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Ajv, type ValidateFunction } from "ajv";
import { Type, type Static, type TSchema } from "typebox";
import { AJV_OPTIONS, parseJsonValue } from "./validation.js";

export const STATUS_TTL_MS = 30_000;

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const TypeReportSchema = Type.Object({
  /** Version of the latest response sent. */
  sent: Nullable(Type.String()),
  /** Version Envoy last accepted, and when. */
  acked: Nullable(Type.String()),
  ackedAt: Nullable(Type.String()),
  /** The latest rejection, if Envoy has not accepted anything since. */
  nacked: Nullable(Type.Object({ version: Type.String(), error: Type.String(), at: Type.String() })),
});
export type TypeReport = Static<typeof TypeReportSchema>;

export const EnvoyReportSchema = Type.Object({
  node: Type.String(),
  replica: Type.String(),
  stream: Type.Integer(),
  protocol: Type.Union([Type.Literal("sotw"), Type.Literal("delta")]),
  connected: Type.Boolean(),
  connectedAt: Type.String(),
  /** When this report last changed. */
  updatedAt: Type.String(),
  /** Bucket revision the Envoy holds completely (everything written up to it); null until it holds a whole config. */
  syncedRevision: Nullable(Type.Integer()),
  /** Per type: CDS, EDS, LDS, RDS. */
  types: Type.Record(Type.String(), TypeReportSchema),
});
export type EnvoyReport = Static<typeof EnvoyReportSchema>;

export interface EnvoyPage {
  envoys: EnvoyReport[];
}

/** Largest page of Envoy reports or rejected services, in bytes of JSON: well under NATS's 1 MB message limit. */
export const STATUS_PAGE_BYTES = 256 * 1024;

const ReplicaReportSchema = Type.Object({
  replica: Type.String(),
  updatedAt: Type.String(),
  ready: Type.Boolean(),
  /** Bucket revision of the replica's committed snapshot: what its Envoys are given. */
  revision: Type.Integer(),
});
export type ReplicaReport = Static<typeof ReplicaReportSchema>;

/** Why a service's latest record is not served. */
const RejectedServiceSchema = Type.Object({
  state: Type.Union([Type.Literal("invalid"), Type.Literal("conflict")]),
  revision: Type.Integer(),
  problem: Type.Optional(Type.String()),
  conflicts: Type.Optional(Type.Array(Type.Object({ domain: Type.String(), heldBy: Type.String() }))),
  /** The revision Envoys still route (the last good one), null when none is; absent when unknown. */
  servingRevision: Type.Optional(Nullable(Type.Integer())),
});
export type RejectedService = Static<typeof RejectedServiceSchema>;

/** Rejected services by name, as a page holds them. */
export interface RejectedPage {
  rejected: Record<string, RejectedService>;
}

/** Compiled on first use: only the API reads reports, and a replica's cold start need not pay for them. */
let validators:
  | { envoy: ValidateFunction<EnvoyReport>; replica: ValidateFunction<ReplicaReport>; rejected: ValidateFunction<RejectedService> }
  | undefined;
function reportValidators() {
  if (!validators) {
    const ajv = new Ajv(AJV_OPTIONS);
    validators = {
      envoy: ajv.compile<EnvoyReport>(EnvoyReportSchema),
      replica: ajv.compile<ReplicaReport>(ReplicaReportSchema),
      rejected: ajv.compile<RejectedService>(RejectedServiceSchema),
    };
  }
  return validators;
}
function parse(value: Uint8Array): unknown {
  try {
    return parseJsonValue(value);
  } catch {
    return undefined;
  }
}

/**
 * The Envoy reports of a page, as a replica writes them; undefined when the value is not a page.
 * Reports that are not of that shape are left out. The status bucket is the replicas' own, but a
 * stray write there must not break the API.
 */
export function decodeEnvoyPage(value: Uint8Array): EnvoyReport[] | undefined {
  const page = parse(value) as { envoys?: unknown } | undefined;
  if (typeof page !== "object" || page === null || !Array.isArray(page.envoys)) return undefined;
  const isEnvoyReport = reportValidators().envoy;
  return page.envoys.filter((report): report is EnvoyReport => isEnvoyReport(report));
}

/** The rejected services of a page, as a replica writes them; undefined when the value is not a page. */
export function decodeRejectedPage(value: Uint8Array): Map<string, RejectedService> | undefined {
  const page = parse(value) as { rejected?: unknown } | undefined;
  const rejected = typeof page === "object" && page !== null ? page.rejected : undefined;
  if (typeof rejected !== "object" || rejected === null || Array.isArray(rejected)) return undefined;
  const isRejected = reportValidators().rejected;
  return new Map(Object.entries(rejected).filter((entry): entry is [string, RejectedService] => isRejected(entry[1])));
}

/** A replica's report, or undefined when the value is not one. */
export function decodeReplicaReport(value: Uint8Array): ReplicaReport | undefined {
  const report = parse(value);
  return reportValidators().replica(report) ? report : undefined;
}

const encode = (text: string) => Buffer.from(text, "utf8").toString("base64url");

export function replicaReportKey(replica: string): string {
  return `replicas.${encode(replica)}`;
}

/** The key of a page of the replica's Envoys; page "*" gives the filter for all of them. */
export function envoyPageKey(replica: string, page: number | "*"): string {
  return `envoys.${encode(replica)}.${page}`;
}

/** The key of a page of the replica's rejected services; page "*" gives the filter for all of them. */
export function rejectedPageKey(replica: string, page: number | "*"): string {
  return `rejected.${encode(replica)}.${page}`;
}

/** Opens the status bucket, creating it when missing (memory storage, entries expire). */
export function openStatusBucket(js: JetStreamClient, bucket: string, replicas: number): Promise<KV> {
  return new Kvm(js).create(bucket, {
    history: 1,
    ttl: STATUS_TTL_MS,
    storage: StorageType.Memory,
    replicas,
    description: "Envoyage sync status: replicas and their Envoys (expiring)",
  });
}
