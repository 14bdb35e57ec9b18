// One write of a service at a time in this API: a PUT or DELETE of a service waits for the one
// before it. Claims belong to a service, not to a request, so two requests of the same service
// in flight together could each count the other's claim as its own and give it back (a failed
// create, a PUT dropping the domain another re-lists), leaving a record that lists a domain with
// no claim (found by a code review, 39–80 % of runs of such races). Writers of the same service
// through another API or the CLI are caught by compare-and-set writes instead (service-store.ts).
export class ServiceLocks {
  /** The last write queued per service; dropped once it is done and nothing waits behind it. */
  readonly #tails = new Map<string, Promise<unknown>>();

  /**
   * Runs `write` once the writes of `name` before it are done, unless `abandoned` is aborted by
   * then (its client was answered 503 meanwhile: it must not land after that answer).
   */
  run<T>(name: string, write: () => Promise<T>, abandoned?: AbortSignal): Promise<T> {
    const before = this.#tails.get(name);
    const start = () => {
      abandoned?.throwIfAborted();
      return write();
    };
    // Alone, it starts at once (not a microtask later): see TurnBatcher.
    const done = before ? before.then(start) : start();
    const tail = done.then(
      () => {},
      () => {},
    );
    this.#tails.set(name, tail);
    void tail.then(() => {
      if (this.#tails.get(name) === tail) this.#tails.delete(name);
    });
    return done;
  }
}
