// Sync status: what each replica publishes about itself and the Envoys connected to it, in a KV
// bucket of its own (ENVOYAGE_STATUS_BUCKET, default "envoyage-status"). It is memory-backed and
// every entry expires unless refreshed, so the entries of a replica that died disappear by
// themselves. The API reads it for GET /v1/envoys and the status of each service.
//
//   replicas.<replica>             ReplicaReport
//   envoys.<replica>.<page>        EnvoyPage: the replica's ADS streams, in pages of at most
//                                  ENVOY_PAGE_BYTES of JSON (<page> counts from 0)
//
// <replica> is base64url (KV keys allow few characters). Envoys go in pages, not an entry each,
// because a config change changes what every Envoy holds: a thousand Envoys are then a few
// writes, not a thousand.
import { StorageType } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { JetStreamClient } from "@nats-io/jetstream";

export const STATUS_TTL_MS = 30_000;

export interface TypeReport {
  /** Version of the latest response sent. */
  sent: string | null;
  /** Version Envoy last accepted, and when. */
  acked: string | null;
  ackedAt: string | null;
  /** The latest rejection, if Envoy has not accepted anything since. */
  nacked: { version: string; error: string; at: string } | null;
}

export interface EnvoyReport {
  node: string;
  replica: string;
  stream: number;
  protocol: "sotw" | "delta";
  connected: boolean;
  connectedAt: string;
  /** When this report last changed. */
  updatedAt: string;
  /** Bucket revision the Envoy holds completely (everything written up to it); null until it holds a whole config. */
  syncedRevision: number | null;
  /** Per type: CDS, EDS, LDS, RDS. */
  types: Record<string, TypeReport>;
}

export interface EnvoyPage {
  envoys: EnvoyReport[];
}

/** Largest page of Envoy reports, in bytes of JSON: well under NATS's 1 MB message limit. */
export const ENVOY_PAGE_BYTES = 256 * 1024;

export interface ReplicaReport {
  replica: string;
  updatedAt: string;
  ready: boolean;
  /** Bucket revision the replica has applied. */
  revision: number;
  /** Services whose latest record is not served, by name: its state and why. */
  rejected: Record<string, { state: "invalid" | "conflict"; revision: number; problem?: string; conflicts?: { domain: string; heldBy: string }[] }>;
}

const encode = (text: string) => Buffer.from(text, "utf8").toString("base64url");

export function replicaReportKey(replica: string): string {
  return `replicas.${encode(replica)}`;
}

export function envoyPageKey(replica: string, page: number): string {
  return `envoys.${encode(replica)}.${page}`;
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
