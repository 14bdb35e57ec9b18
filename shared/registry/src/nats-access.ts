// How the services authenticate to NATS and secure the connection. The settings are the nats
// CLI's own environment variables, read the way it reads them, so what an operator set for
// `nats` works for Envoyage as it is: NATS_USER (alone, a token), NATS_PASSWORD, NATS_CREDS,
// NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY.
import { readFileSync } from "node:fs";
import { credsAuthenticator, nkeyAuthenticator, type ConnectionOptions } from "@nats-io/nats-core";
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

export function natsAccess(env: Env): NatsAccess {
  const user = envString(env, "NATS_USER", "");
  const password = env["NATS_PASSWORD"] ?? "";
  const creds = envFile(env, "NATS_CREDS");
  const nkey = envFile(env, "NATS_NKEY");
  const ways = [user !== "" && "NATS_USER", creds && "NATS_CREDS", nkey && "NATS_NKEY"].filter(Boolean);
  if (ways.length > 1) throw new ConfigError(`${ways.join(" and ")} are different ways to authenticate to NATS: set one`);
  if (password !== "" && user === "") throw new ConfigError("NATS_PASSWORD is set without NATS_USER");
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
 * rotated in place is taken at the next reconnect without a restart.
 */
export function connectionOptions({ auth, tls }: NatsAccess): Partial<ConnectionOptions> {
  const options: Partial<ConnectionOptions> = tls ? { tls: { ...tls } } : {};
  switch (auth.kind) {
    case "none":
      return options;
    case "token":
      return { ...options, token: auth.token };
    case "user":
      return { ...options, user: auth.user, pass: auth.password };
    case "creds":
      return { ...options, authenticator: credsAuthenticator(() => readFileSync(auth.file)) };
    case "nkey":
      return { ...options, authenticator: nkeyAuthenticator(() => new TextEncoder().encode(readFileSync(auth.file, "utf8").trim())) };
  }
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
      return "token (NATS_USER)";
    case "user":
      return `user ${auth.user} (NATS_USER, NATS_PASSWORD)`;
    case "creds":
      return `credentials ${auth.file} (NATS_CREDS)`;
    case "nkey":
      return `nkey seed ${auth.file} (NATS_NKEY)`;
  }
}
