// Finding a NATS server that takes this client, before the client proper connects. The client
// alone either waits for a server without a word about why none takes it (down, refused
// credentials, a refused TLS handshake), or drops from its pool, for good, every server that
// fails the first connect (a node down when the service started would never be used). So each
// server is tried alone first, saying each reason once, and the client then connects with the
// one that answered first at the head of its list: nothing fails before it, nothing is dropped.
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { errors, type ConnectionOptions } from "@nats-io/nats-core";
import type { Logger } from "pino";

/** How long to wait after every server failed, before trying them all again. */
export const PROBE_EVERY_MS = 500;

export interface ProbeOptions {
  servers: string[];
  /** The client's own options (name, credentials, TLS, timeout): the probes connect as it does. */
  connection: Partial<ConnectionOptions>;
  logger: Logger;
  /** Details every line carries (how the client authenticates, never a secret). */
  details: Record<string, string>;
  /** True once the link is closing: the search stops, and finds nothing. */
  stopped: () => boolean;
}

/**
 * The first server found to take this client; undefined once stopped. All are tried at once: one
 * that does not answer at all (its host down) holds the others up by no more than its own try.
 */
export async function findServer({ servers, connection, logger, details, stopped }: ProbeOptions): Promise<string | undefined> {
  const said = new Set<string>();
  let found = false; // probes still trying then have nothing to say
  const probe = async (server: string): Promise<string> => {
    try {
      const nc = await connect({ ...connection, servers: [server], name: `${String(connection.name)} (probe)`, reconnect: false, waitOnFirstConnect: false });
      await nc.close();
      return server;
    } catch (error) {
      const reason = (error as Error).message;
      if (!said.has(`${server} ${reason}`) && !found && !stopped()) {
        said.add(`${server} ${reason}`);
        const refused = error instanceof errors.AuthorizationError || error instanceof errors.UserAuthenticationExpiredError;
        if (refused) logger.error({ server, reason, ...details }, "NATS refused this client's credentials; trying again");
        else logger.warn({ server, reason, ...details }, "cannot connect to NATS; trying again");
      }
      throw error;
    }
  };
  while (!stopped()) {
    try {
      const server = await Promise.any(servers.map(probe));
      found = true;
      return server;
    } catch {
      await sleep(PROBE_EVERY_MS);
    }
  }
  return undefined;
}
