// Protobuf wire-format helpers for assembling messages from pre-encoded parts.
//
// A repeated message field is the concatenation of its elements, each tagged and
// length-prefixed, and a parser accepts fields in any order. So a resource is encoded once per
// version, and a DiscoveryResponse for any number of streams is a concatenation of those bytes:
// no re-encoding per stream, no per-stream copies of the resources.

const WIRE_LENGTH_DELIMITED = 2;

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

function writeVarint(target: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    target[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  target[offset++] = value;
  return offset;
}

function fieldIn(allocate: (size: number) => Buffer, fieldNumber: number, payload: Uint8Array): Buffer {
  const tag = (fieldNumber << 3) | WIRE_LENGTH_DELIMITED;
  const out = allocate(varintSize(tag) + varintSize(payload.length) + payload.length);
  let offset = writeVarint(out, 0, tag);
  offset = writeVarint(out, offset, payload.length);
  out.set(payload, offset);
  return out;
}

/** One length-delimited field (string, bytes or embedded message): tag, length, payload. */
export function lengthDelimitedField(fieldNumber: number, payload: Uint8Array): Buffer {
  return fieldIn(Buffer.allocUnsafe, fieldNumber, payload);
}

/**
 * The same field in memory of its own, for bytes kept as long as a resource is (and a removed one
 * is kept for minutes). A small Buffer is otherwise a slice of Node's shared pool, and keeps the
 * whole slab alive (Buffer.poolSize, 64 KiB on Node 26): a replica whose registry churned
 * (services created and deleted at 20/s) grew by ~2 MB/s, to 900 MB, of slabs held by the few
 * bytes each kept resource had in them.
 */
export function ownedField(fieldNumber: number, payload: Uint8Array): Buffer {
  return fieldIn(Buffer.allocUnsafeSlow, fieldNumber, payload);
}

/** A copy of `bytes` in memory of its own (see ownedField). */
export function ownedCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}

/** A string field; like every proto3 encoder, an empty string is omitted. */
export function stringField(fieldNumber: number, value: string): Buffer {
  return value === "" ? Buffer.alloc(0) : lengthDelimitedField(fieldNumber, Buffer.from(value, "utf8"));
}

/** The bytes of a google.protobuf.Any holding `value` (type_url = 1, value = 2). */
export function encodeAny(typeUrl: string, value: Uint8Array): Buffer {
  return Buffer.concat([stringField(1, typeUrl), value.length === 0 ? Buffer.alloc(0) : lengthDelimitedField(2, value)]);
}
