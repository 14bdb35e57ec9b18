// A state-of-the-world DiscoveryRequest, decoded lazily. Envoy repeats every resource name it
// wants in every request of a type, ACKs included: with 10,000 EDS clusters that is ~150 KB of
// names per ACK, per Envoy. Decoding them into strings each time was most of a replica's CPU for
// a change reaching 1,000 Envoys. Here the names stay the raw bytes of their fields, so a stream
// whose list did not change compares bytes; a new list is decoded once and interned. The node is
// reduced to its id, the part a stream uses.
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Status } from "@envoyage/proto/google/rpc/status.js";

// Field numbers of envoy.service.discovery.v3.DiscoveryRequest and envoy.config.core.v3.Node.
const VERSION_INFO = 1;
const NODE = 2;
const RESOURCE_NAMES = 3;
const TYPE_URL = 4;
const RESPONSE_NONCE = 5;
const ERROR_DETAIL = 6;
const NODE_ID = 1;
const NAMES_TAG = (RESOURCE_NAMES << 3) | WireType.LengthDelimited;

export interface SotwRequestView {
  versionInfo: string;
  nodeId: string | undefined;
  typeUrl: string;
  responseNonce: string;
  /** error_detail.message of a NACK ("" if Envoy gave none); undefined on an ACK or request. */
  errorMessage: string | undefined;
  /** The resource_names fields as sent (tags included): equal bytes, equal lists; resourceNames decodes them. */
  namesRaw: Buffer;
}

export function decodeSotwRequest(bytes: Buffer): SotwRequestView {
  const reader = new BinaryReader(bytes);
  const view: SotwRequestView = {
    versionInfo: "",
    nodeId: undefined,
    typeUrl: "",
    responseNonce: "",
    errorMessage: undefined,
    namesRaw: EMPTY,
  };
  // Envoy writes the names as one run of fields; pieces only if something came in between.
  const pieces: [number, number][] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === RESOURCE_NAMES && wireType === WireType.LengthDelimited) {
      skipNames(reader, bytes);
      const last = pieces[pieces.length - 1];
      if (last && last[1] === start) last[1] = reader.pos;
      else pieces.push([start, reader.pos]);
    } else if (field === VERSION_INFO && wireType === WireType.LengthDelimited) view.versionInfo = reader.string();
    else if (field === TYPE_URL && wireType === WireType.LengthDelimited) view.typeUrl = reader.string();
    else if (field === RESPONSE_NONCE && wireType === WireType.LengthDelimited) view.responseNonce = reader.string();
    else if (field === NODE && wireType === WireType.LengthDelimited) view.nodeId = nodeIdOf(reader.bytes());
    else if (field === ERROR_DETAIL && wireType === WireType.LengthDelimited) view.errorMessage = Status.decode(reader.bytes()).message;
    else reader.skip(wireType);
  }
  if (pieces.length === 1) view.namesRaw = bytes.subarray(pieces[0]![0], pieces[0]![1]);
  else if (pieces.length > 1) view.namesRaw = Buffer.concat(pieces.map(([from, to]) => bytes.subarray(from, to)));
  return view;
}

const EMPTY = Buffer.alloc(0);

/**
 * Steps over a run of resource_names fields, from just after the first one's tag: the hot loop of
 * a large request, so it moves the reader past each name instead of making a subarray per name
 * as reader.skip does.
 */
function skipNames(reader: BinaryReader, bytes: Buffer): void {
  for (;;) {
    const length = reader.uint32();
    if (length > reader.len - reader.pos) throw new RangeError("DiscoveryRequest: resource name runs past the end");
    reader.pos += length;
    if (bytes[reader.pos] !== NAMES_TAG) return;
    reader.pos++;
  }
}

function nodeIdOf(node: Uint8Array): string | undefined {
  const reader = new BinaryReader(node);
  let id: string | undefined;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === NODE_ID && wireType === WireType.LengthDelimited) id = reader.string(); // the last one wins
    else reader.skip(wireType);
  }
  return id;
}

/** The names in a request's namesRaw. */
export function resourceNames(raw: Uint8Array): string[] {
  const reader = new BinaryReader(raw);
  const names: string[] = [];
  while (reader.pos < reader.len) {
    reader.tag();
    names.push(reader.string());
  }
  return names;
}
