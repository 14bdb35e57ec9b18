// How the services authenticate to NATS and secure the connection. The settings are the nats
// CLI's own environment variables, read the way it reads them, so what an operator set for
// `nats` works for Envoyage as it is: NATS_USER (alone, a token), NATS_PASSWORD, NATS_TOKEN,
// NATS_CREDS, NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY. Those it does not read (NATS_CONTEXT,
// NATS_JWT, NATS_SEED) are refused, not ignored: ignored, they would leave the operator wondering.
import { readFileSync } from "node:fs";
import { credsAuthenticator, nkeyAuthenticator, type ConnectionOptions } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { ConfigError, envFile, envString, type Env } from "./config.js";

export type NatsAuth =
  | { kind: "none" }
  | { kind: "token"; token: string }
  | { kind: "user"; user: string; password: string }
  /** A .creds file: the user's JWT and nkey seed (decentralized auth, Synadia Cloud). */
  | { kind: "creds"; file: string }
  /** A file holding an nkey seed. */
  | { kind: "nkey"; file: string };

export interface NatsTls {
  /** NATS_CA: the CA that signed the server's certificate (else the system's CAs). */
  caFile?: string;
  /** NATS_CERT and NATS_KEY: a client certificate, for servers that verify clients. */
  certFile?: string;
  keyFile?: string;
}

export interface NatsAccess {
  auth: NatsAuth;
  /** Undefined: TLS only if the server asks for it (or a tls:// URL), verified against the system's CAs. */
  tls: NatsTls | undefined;
}

/** No credentials; TLS only if the server asks for it. */
export const NO_NATS_ACCESS: NatsAccess = { auth: { kind: "none" }, tls: undefined };

/** Variables of the nats CLI these services do not read: refused rather than silently ignored. */
const NOT_READ: Record<string, string> = {
  NATS_CONTEXT: "nats contexts are not read: set NATS_URL and the credentials as variables",
  NATS_JWT: "put the JWT and its seed in a creds file (NATS_CREDS)",
  NATS_SEED: "put the JWT and its seed in a creds file (NATS_CREDS), or a user's seed alone in NATS_NKEY",
};

export function natsAccess(env: Env): NatsAccess {
  for (const [name, instead] of Object.entries(NOT_READ)) {
    if (envString(env, name, "") !== "") throw new ConfigError(`${name} is set, but Envoyage does not read it: ${instead}`);
  }
  const token = envString(env, "NATS_TOKEN", "");
  if (token !== "" && envString(env, "NATS_USER", "") !== "") throw new ConfigError("NATS_TOKEN and NATS_USER are different ways to authenticate to NATS: set one");
  const user = token !== "" ? token : envString(env, "NATS_USER", "");
  const password = env["NATS_PASSWORD"] ?? "";
  const creds = envFile(env, "NATS_CREDS");
  const nkey = envFile(env, "NATS_NKEY");
  const ways = [user !== "" && (token !== "" ? "NATS_TOKEN" : "NATS_USER"), creds && "NATS_CREDS", nkey && "NATS_NKEY"].filter(Boolean);
  if (ways.length > 1) throw new ConfigError(`${ways.join(" and ")} are different ways to authenticate to NATS: set one`);
  if (password !== "" && (user === "" || token !== "")) throw new ConfigError("NATS_PASSWORD is set without NATS_USER");
  let auth: NatsAuth = { kind: "none" };
  if (creds) auth = { kind: "creds", file: creds };
  else if (nkey) auth = { kind: "nkey", file: nkey };
  else if (user !== "") auth = password === "" ? { kind: "token", token: user } : { kind: "user", user, password };

  const tls: NatsTls = {};
  const ca = envFile(env, "NATS_CA");
  const cert = envFile(env, "NATS_CERT");
  const key = envFile(env, "NATS_KEY");
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError("NATS_CERT and NATS_KEY go together: the client certificate and its private key");
  if (ca) tls.caFile = ca;
  if (cert && key) Object.assign(tls, { certFile: cert, keyFile: key });
  return { auth, tls: ca || cert ? tls : undefined };
}

/**
 * The client's options for that access. Credential files are read at every connect, so a file
 * rotated in place is taken at the next reconnect without a restart; one that cannot be read
 * then (missing, or half written during a rotation) is said once, and the last good content used:
 * the client would otherwise close the connection for good. A tls:// server makes TLS required,
 * as the nats CLI does: the client alone would connect in plaintext to a server that offers none.
 */
export function connectionOptions({ auth, tls }: NatsAccess, servers: readonly string[], logger: Logger): Partial<ConnectionOptions> {
  const tlsRequired = servers.some((server) => server.toLowerCase().startsWith("tls://"));
  const options: Partial<ConnectionOptions> = tls || tlsRequired ? { tls: { ...tls } } : {};
  switch (auth.kind) {
    case "none":
      return options;
    case "token":
      return { ...options, token: auth.token };
    case "user":
      return { ...options, user: auth.user, pass: auth.password };
    case "creds":
      return { ...options, authenticator: credsAuthenticator(lastGood("NATS_CREDS", auth.file, logger, (text) => new TextEncoder().encode(text))) };
    case "nkey":
      return { ...options, authenticator: nkeyAuthenticator(lastGood("NATS_NKEY", auth.file, logger, (text) => new TextEncoder().encode(text.trim()))) };
  }
}

/** Reads the file each time, falling back to what it last held (read once at start, so there is one). */
function lastGood(name: string, file: string, logger: Logger, decode: (text: string) => Uint8Array): () => Uint8Array {
  let good = decode(readFileSync(file, "utf8"));
  let failing = false;
  return () => {
    try {
      const text = readFileSync(file, "utf8");
      if (text.trim() === "") throw new Error("the file is empty");
      good = decode(text);
      failing = false;
    } catch (error) {
      if (!failing) logger.warn({ file, reason: (error as Error).message }, `${name} cannot be read; connecting with what it held before`);
      failing = true;
    }
    return good;
  };
}

/** The access for logs: how, never a secret. */
export function describeAccess({ auth, tls }: NatsAccess): { auth: string; tls: string } {
  const files = tls ? Object.values(tls).join(", ") : "";
  return { auth: authInWords(auth), tls: tls ? `with ${files}` : "if the server asks for it" };
}

function authInWords(auth: NatsAuth): string {
  switch (auth.kind) {
    case "none":
      return "none";
    case "token":
      return "token (NATS_USER or NATS_TOKEN)";
    case "user":
      return `user ${auth.user} (NATS_USER, NATS_PASSWORD)`;
    case "creds":
      return `credentials ${auth.file} (NATS_CREDS)`;
    case "nkey":
      return `nkey seed ${auth.file} (NATS_NKEY)`;
  }
}
