// Request bodies: UTF-8 JSON, parsed with prototype-poisoning keys refused (secure-json-parse),
// and every refusal in the API's error shape, saying what is wrong with the body.
import secureJson from "secure-json-parse";
import { ApiError } from "./errors.js";

/** JSON is UTF-8 (RFC 8259): a body labelled otherwise would be read as UTF-8 and its text changed. */
const UTF8 = new Set(["utf-8", "utf8"]);

/** The first charset parameter that is not UTF-8 (a header may repeat the parameter). */
function foreignCharsetOf(contentType: string | undefined): string | undefined {
  // Most requests say just "application/json": no parameters, nothing to scan.
  if (!contentType?.includes(";")) return undefined;
  for (const match of contentType.matchAll(/;\s*charset\s*=\s*"?([^";\s]+)"?/gi)) {
    const charset = match[1]!.toLowerCase();
    if (!UTF8.has(charset)) return charset;
  }
  return undefined;
}

/** The body of a request labelled application/json; undefined for the empty body of a DELETE. */
export function parseJsonBody(contentType: string | undefined, method: string, body: string): unknown {
  const charset = foreignCharsetOf(contentType);
  if (charset !== undefined) {
    throw new ApiError(415, "unsupported_media_type", `send the record as UTF-8 JSON; charset=${charset} is not supported`);
  }
  // A byte order mark may start the text (RFC 8259 lets a parser ignore it): a file saved by an
  // editor that writes one is taken as NATS's KV decoding takes it.
  if (body.charCodeAt(0) === 0xfeff) body = body.slice(1);
  const blank = body.trim() === "";
  // A DELETE carries no body: clients that label every request as JSON get no error for an empty one.
  if (blank && method === "DELETE") return undefined;
  if (blank) throw new ApiError(400, "invalid_json", "the body is empty: send the service record as JSON");
  try {
    return secureJson.parse(body, undefined, { protoAction: "error", constructorAction: "error" });
  } catch (error) {
    const message = (error as Error).message;
    if (message.includes("forbidden prototype property")) {
      throw new ApiError(400, "invalid_json", 'the body has a "__proto__" key, or a "constructor" key holding "prototype": refused as prototype poisoning');
    }
    throw new ApiError(400, "invalid_json", `the body is not valid JSON: ${message}`);
  }
}
