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

/** One length-delimited field (string, bytes or embedded message): tag, length, payload. */
export function lengthDelimitedField(fieldNumber: number, payload: Uint8Array): Buffer {
  const tag = (fieldNumber << 3) | WIRE_LENGTH_DELIMITED;
  const out = Buffer.allocUnsafe(varintSize(tag) + varintSize(payload.length) + payload.length);
  let offset = writeVarint(out, 0, tag);
  offset = writeVarint(out, offset, payload.length);
  out.set(payload, offset);
  return out;
}

/** A string field; like every proto3 encoder, an empty string is omitted. */
export function stringField(fieldNumber: number, value: string): Buffer {
  return value === "" ? Buffer.alloc(0) : lengthDelimitedField(fieldNumber, Buffer.from(value, "utf8"));
}

/** The bytes of a google.protobuf.Any holding `value` (type_url = 1, value = 2). */
export function encodeAny(typeUrl: string, value: Uint8Array): Buffer {
  return Buffer.concat([stringField(1, typeUrl), value.length === 0 ? Buffer.alloc(0) : lengthDelimitedField(2, value)]);
}
