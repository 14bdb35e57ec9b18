// Validation of service records with ajv: the same engine and options Fastify uses for the API,
// so a record the API would reject is also rejected when it arrives straight through NATS.
import { Ajv, type ErrorObject, type Options } from "ajv";
import { ADDRESS_FORMAT, DOMAIN_PATTERN, SERVICE_NAME_PATTERN, ServiceRecordSchema, isAddress, type ServiceRecord } from "./record.js";

/** ajv options shared by the API (Fastify) and the KV decoder. */
export const AJV_OPTIONS: Options = {
  allErrors: false,
  coerceTypes: false,
  removeAdditional: false,
  useDefaults: false,
  strict: true,
  strictTuples: false,
};

/** Registers the formats the record schema uses. Pass it to Fastify as an ajv plugin too. */
export function addRecordFormats(ajv: Ajv): Ajv {
  ajv.addFormat(ADDRESS_FORMAT, { type: "string", validate: isAddress });
  return ajv;
}

export interface RecordProblem {
  /** JSON pointer of the offending field ("" for the whole document). */
  field: string;
  message: string;
}

/** The record schema's patterns in words: an operator should not have to read a regular expression. */
const PATTERNS_IN_WORDS: Record<string, string> = {
  [DOMAIN_PATTERN]:
    'must be a lowercase hostname: labels of a-z, 0-9 and "-" (1 to 63 characters, no "-" at either end) joined by dots, optionally after a leading "*." wildcard; no port, no dot at the end, and an internationalized name in its punycode form (xn--…)',
  [SERVICE_NAME_PATTERN]: 'must be a lowercase DNS label: 1 to 63 characters of a-z, 0-9 and "-", no "-" at either end',
};

/** JSON types as a sentence names them ("must be an integer"). */
const TYPES_IN_WORDS: Record<string, string> = {
  array: "an array",
  boolean: "true or false",
  integer: "a whole number",
  null: "null",
  number: "a number",
  object: "an object",
  string: "a string",
};

/** What GET adds to a record in its answer. */
const ANSWER_FIELDS = new Set(["name", "revision", "status", "problem"]);

/** Longest unknown field name a problem quotes: a record written with the CLI can have any. */
const QUOTED_NAME_CHARS = 100;

function shortened(name: string): string {
  return name.length <= QUOTED_NAME_CHARS ? name : `${name.slice(0, QUOTED_NAME_CHARS)}… (${name.length} characters)`;
}

/** Turns an ajv error into a field and a sentence an operator can act on. */
export function describeValidationError(error: ErrorObject): RecordProblem {
  const path = error.instancePath;
  switch (error.keyword) {
    case "additionalProperties": {
      const name = String(error.params["additionalProperty"]);
      // A record read back (GET) and written again as it came.
      if (path === "" && ANSWER_FIELDS.has(name)) {
        return { field: `/${name}`, message: "is not a field of the record but of the API's answer: drop name, revision, status and problem before writing it" };
      }
      if (name === "") return { field: path, message: 'has a field with an empty name ("")' };
      return { field: `${path}/${shortened(name)}`, message: "is not a known field" };
    }
    case "required":
      return { field: `${path}/${String(error.params["missingProperty"])}`, message: "is required" };
    case "format":
      if (error.params["format"] === ADDRESS_FORMAT) {
        return { field: path, message: "must be an IPv4 or IPv6 address or a hostname (letters, digits, hyphens and dots, no dot at the end)" };
      }
      return { field: path, message: error.message ?? "has the wrong format" };
    case "pattern": {
      const pattern = String(error.params["pattern"]);
      return { field: path, message: PATTERNS_IN_WORDS[pattern] ?? `must match ${pattern}` };
    }
    case "uniqueItems": {
      const [first, second] = [Number(error.params["i"]), Number(error.params["j"])].sort((a, b) => a - b);
      return { field: path, message: `lists the same value twice (items ${first} and ${second})` };
    }
    case "type":
      return { field: path, message: `must be ${TYPES_IN_WORDS[String(error.params["type"])] ?? String(error.params["type"])}` };
    case "minItems":
      return { field: path, message: error.params["limit"] === 1 ? "must not be empty" : `must list at least ${String(error.params["limit"])} items` };
    case "maxItems":
      return { field: path, message: `must list at most ${String(error.params["limit"])} items` };
    case "minLength":
      return { field: path, message: error.params["limit"] === 1 ? "must not be empty" : `must be at least ${String(error.params["limit"])} characters long` };
    case "maxLength":
      return { field: path, message: `must be at most ${String(error.params["limit"])} characters long` };
    case "minimum":
      return { field: path, message: `must be at least ${String(error.params["limit"])}` };
    case "maximum":
      return { field: path, message: `must be at most ${String(error.params["limit"])}` };
    default:
      return { field: path, message: error.message ?? "is invalid" };
  }
}

/** Renders a problem as one line, e.g. "/endpoints/0/port must be at most 65535". */
export function formatProblem(problem: RecordProblem): string {
  return problem.field === "" ? problem.message : `${problem.field} ${problem.message}`;
}

export type DecodeResult =
  | { ok: true; record: ServiceRecord }
  | { ok: false; problem: RecordProblem };

const ajv = addRecordFormats(new Ajv(AJV_OPTIONS));
const validateRecord = ajv.compile<ServiceRecord>(ServiceRecordSchema);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A KV value as the JSON document it holds; throws when it is not UTF-8 JSON. */
export function parseJsonValue(value: Uint8Array | string): unknown {
  return JSON.parse(typeof value === "string" ? value : utf8.decode(value));
}

/** Decodes a KV value (UTF-8 JSON) into a record, or says precisely what is wrong with it. */
export function decodeRecord(value: Uint8Array | string): DecodeResult {
  let document: unknown;
  try {
    document = parseJsonValue(value);
  } catch (error) {
    return { ok: false, problem: { field: "", message: `is not UTF-8 JSON: ${(error as Error).message}` } };
  }
  if (validateRecord(document)) return { ok: true, record: document };
  const [first] = validateRecord.errors ?? [];
  return {
    ok: false,
    problem: first ? describeValidationError(first) : { field: "", message: "is not a service record" },
  };
}
