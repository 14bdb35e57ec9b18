// Requests that arrive together send their NATS requests together.
//
// The NATS client writes what was published at the end of the current microtask checkpoint, and
// Node runs one for every HTTP request it reads. Under load each PUT was therefore a socket write
// of its own and a wakeup of nats-server: a third of the API's CPU at 2,000 PUT/s (profiled with
// --cpu-prof). While other operations are in flight, an operation waits for the event loop's next
// check phase, where every operation read in the same I/O phase starts at once and their
// publishes leave in one write (autocannon, 64 connections, default-sync NATS: 2,650 →
// 3,700–5,250 PUT/s; durable NATS, bound by its disk syncs: ~1,700 → ~1,870). A lone operation,
// with nothing else in flight, starts at once: an operator's single change is not delayed.
export class TurnBatcher {
  #inFlight = 0;
  #nextTurn: Promise<void> | undefined;

  async run<T>(operation: () => Promise<T>): Promise<T> {
    const wait = this.#inFlight > 0;
    this.#inFlight++;
    try {
      if (wait) await this.#turn();
      return await operation();
    } finally {
      this.#inFlight--;
    }
  }

  /** One promise per turn: everything waiting on it continues in the same microtask checkpoint. */
  #turn(): Promise<void> {
    this.#nextTurn ??= new Promise((resolve) =>
      setImmediate(() => {
        this.#nextTurn = undefined;
        resolve();
      }),
    );
    return this.#nextTurn;
  }
}
