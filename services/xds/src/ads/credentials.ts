// How the ADS server meets Envoys: plaintext, TLS, or mutual TLS (Envoys present a certificate
// signed by XDS_TLS_CLIENT_CA). Files are read once, at start: a rotated certificate is taken
// by restarting replicas one at a time, which Envoys ride out on the others.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";

export interface AdsTlsFiles {
  certFile: string;
  keyFile: string;
  /** Envoys must present a certificate signed by this CA (mutual TLS). */
  clientCaFile: string | undefined;
}

export function adsCredentials(tls: AdsTlsFiles | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const clientCa = tls.clientCaFile === undefined ? null : readFileSync(tls.clientCaFile);
  return grpc.ServerCredentials.createSsl(clientCa, [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }], clientCa !== null);
}
