// One write of a service at a time in this API: a PUT or DELETE of a service waits for the one
// before it. Claims belong to a service, not to a request, so two requests of the same service
// in flight together could each count the other's claim as its own and give it back (a failed
// create, a PUT dropping the domain another re-lists), leaving a record that lists a domain with
// no claim (found by a code review, 39–80 % of runs of such races). Writers of the same service
// through another API or the CLI are caught by compare-and-set writes instead (service-store.ts).
export class ServiceLocks {
  /** The last write queued per service; dropped once it is done and nothing waits behind it. */
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(name: string, write: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(name);
    // Alone, it starts at once (not a microtask later): see TurnBatcher.
    const done = before ? before.then(write) : write();
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
