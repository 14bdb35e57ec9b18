// Waiting for work at most so long: shutdowns, answers and give-backs that must not hang on a
// NATS server that is connected but does not answer.

/** Returned by within() when the time ran out first. */
export const TIMED_OUT = Symbol("timed out");

/**
 * `work`'s result, or TIMED_OUT once `ms` have passed without it (the work goes on; its
 * rejection after that is not reported). The timer does not outlive the race.
 */
export async function within<T>(work: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms)));
  work.catch(() => {}); // lost the race: nobody awaits it any more
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
