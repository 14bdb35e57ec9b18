// The KV bucket: its name and settings, the key layout, and binding to it.
//
//   services.<name>    a service record (UTF-8 JSON, see record.ts)
//   domains.<domain>   the claim on a domain: the name of the service that holds it. Written with
//                      compare-and-set, so exactly one service wins a domain; `*.` is stored as `_.`
//                      because `*` is a wildcard in NATS subjects.
import {
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { DOMAIN_PATTERN, MAX_HOSTNAME_LENGTH, SERVICE_NAME_PATTERN } from "./record.js";

export const SERVICE_PREFIX = "services.";
const CLAIM_PREFIX = "domains.";

/**
 * Revisions kept per key. The replicas fall back to the newest valid revision of a service when
 * its latest value is invalid, so a little history is what makes "last good config keeps
 * serving" hold on a replica that starts after the bad write.
 */
export const BUCKET_HISTORY = 10;

export function serviceKey(name: string): string {
  return `${SERVICE_PREFIX}${name}`;
}

export function claimKey(domain: string): string {
  return `${CLAIM_PREFIX}${domain.startsWith("*.") ? `_${domain.slice(1)}` : domain}`;
}

const utf8 = new TextDecoder();

/** The service named by a claim's value (written by the API, or by hand with the CLI: trimmed). */
export function claimHolder(value: Uint8Array): string {
  return utf8.decode(value).trim();
}

export type ParsedKey =
  | { kind: "service"; name: string }
  | { kind: "claim"; domain: string }
  /** Under a prefix of the layout, with a name the API would refuse. */
  | { kind: "invalid" }
  | { kind: "other" };

const SERVICE_NAME = new RegExp(SERVICE_NAME_PATTERN);
const DOMAIN = new RegExp(DOMAIN_PATTERN);

/** Whether `name` is one the API would take for a service (services.<name>). */
export function isServiceName(name: string): boolean {
  return SERVICE_NAME.test(name);
}

/**
 * What a key is. A key under a prefix whose name is not one the API accepts (NATS subjects allow
 * `:`, `#`, upper case, UTF-8…) is invalid: outside the layout like any other key, so a stray
 * write cannot stand for a service or a claim, but worth telling apart from unrelated keys.
 */
export function parseKey(key: string): ParsedKey {
  if (key.startsWith(SERVICE_PREFIX)) {
    const name = key.slice(SERVICE_PREFIX.length);
    return SERVICE_NAME.test(name) ? { kind: "service", name } : { kind: "invalid" };
  }
  if (key.startsWith(CLAIM_PREFIX)) {
    const stored = key.slice(CLAIM_PREFIX.length);
    const domain = stored.startsWith("_.") ? `*${stored.slice(1)}` : stored;
    return domain.length <= MAX_HOSTNAME_LENGTH && DOMAIN.test(domain) ? { kind: "claim", domain } : { kind: "invalid" };
  }
  return { kind: "other" };
}

export interface BucketOptions {
  bucket: string;
  /** Create the bucket when it is missing (the API does; replicas wait for it). */
  create: boolean;
  /** JetStream replicas of the stream, when this creates it (1 by default, 3 on a 3-node cluster). */
  replicas?: number;
  /** Bound on every JetStream request, so callers fail fast instead of hanging. */
  timeoutMs: number;
}

export class BucketMissingError extends Error {
  constructor(bucket: string) {
    super(`KV bucket "${bucket}" does not exist yet (the API creates it on start)`);
    this.name = "BucketMissingError";
  }
}

/** Binds to the bucket, creating it first when asked to. */
export async function openBucket(nc: NatsConnection, options: BucketOptions): Promise<KV> {
  const js = jetstream(nc, { timeout: options.timeoutMs });
  const kvm = new Kvm(js);
  if (options.create) {
    const kv = await kvm.create(options.bucket, {
      history: BUCKET_HISTORY,
      replicas: options.replicas ?? 1,
      description: "Envoyage service registry",
    });
    return kv;
  }
  const jsm = await jetstreamManager(nc, { timeout: options.timeoutMs });
  try {
    await jsm.streams.info(`KV_${options.bucket}`);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) throw new BucketMissingError(options.bucket);
    throw error;
  }
  return kvm.open(options.bucket);
}
