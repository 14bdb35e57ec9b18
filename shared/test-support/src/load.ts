// Steady HTTP traffic through Envoy with autocannon, for tests that must see zero failures.
import autocannon from "autocannon";

export interface LoadResult {
  requests: number;
  ok: number;
  /** Responses that were not 2xx, by status code. */
  failedByStatus: Record<string, number>;
  non2xx: number;
  errors: number;
  timeouts: number;
}

export interface Load {
  /** Stops the traffic and says what happened. */
  stop(): Promise<LoadResult>;
}

/**
 * Traffic through Envoy until stop(). `test` stops it when the test ends, whatever happens: a
 * failed assertion would otherwise leave it running for an hour, and the test file with it.
 */
export function startLoad(test: { after(fn: () => unknown): void }, options: { port: number; host: string; connections?: number }): Load {
  let instance!: autocannon.Instance;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: `http://127.0.0.1:${options.port}/`,
        headers: { host: options.host },
        connections: options.connections ?? 8,
        duration: 3600, // until stop()
        timeout: 5,
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
  test.after(() => {
    instance.stop();
    return finished.catch(() => undefined);
  });
  return {
    async stop() {
      instance.stop();
      const result = await finished;
      const failedByStatus = Object.fromEntries(
        Object.entries(result.statusCodeStats ?? {}).filter(([code]) => !code.startsWith("2")).map(([code, stats]) => [code, stats?.count ?? 0]),
      );
      return {
        requests: result.requests.total,
        ok: result["2xx"],
        failedByStatus,
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
      };
    },
  };
}
