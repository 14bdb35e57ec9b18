// Bounds the response bytes being written to all streams at once. Responses are shared
// pre-encoded buffers, but grpc-js frames each message into a copy of its own per stream and
// holds that copy until the socket has taken it. A fleet syncing at once — a replica starting,
// or a reconnect storm — would otherwise hold one copy of the whole configuration per Envoy
// (1,000 Envoys × 10,000 services measured ~500 MB of such copies). Writes beyond the budget
// wait, in order; a write gives its bytes back once flushed, or when its stream closes.

/** Writes `bytes` to a stream, calling `flushed` once the transport has taken them. */
export type Writer = (bytes: Buffer, flushed: () => void) => void;

interface Write {
  owner: object;
  bytes: Buffer;
  writer: Writer;
  released: boolean;
}

export class WriteBudget {
  readonly limit: number;
  #inFlight = 0;
  readonly #queue: Write[] = [];
  readonly #unflushed = new Map<object, Set<Write>>();

  constructor(limitBytes: number) {
    this.limit = limitBytes;
  }

  /** Bytes written but not yet flushed. */
  get inFlightBytes(): number {
    return this.#inFlight;
  }

  /** Writes waiting for the budget. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Writes now if the budget allows and nothing waits before it; otherwise queues the write. */
  write(owner: object, bytes: Buffer, writer: Writer): void {
    this.#queue.push({ owner, bytes, writer, released: false });
    this.#drain();
  }

  /** The stream closed: its queued writes are dropped, its unflushed bytes given back. */
  forget(owner: object): void {
    for (const write of this.#unflushed.get(owner) ?? []) this.#release(write);
    this.#unflushed.delete(owner);
    const kept = this.#queue.filter((write) => write.owner !== owner);
    this.#queue.splice(0, this.#queue.length, ...kept);
    this.#drain();
  }

  #drain(): void {
    // A write larger than the whole budget still goes, alone.
    while (this.#queue.length > 0 && (this.#inFlight === 0 || this.#inFlight + this.#queue[0]!.bytes.length <= this.limit)) {
      const write = this.#queue.shift()!;
      this.#inFlight += write.bytes.length;
      let unflushed = this.#unflushed.get(write.owner);
      if (!unflushed) this.#unflushed.set(write.owner, (unflushed = new Set()));
      unflushed.add(write);
      write.writer(write.bytes, () => {
        this.#release(write);
        this.#drain();
      });
    }
  }

  #release(write: Write): void {
    if (write.released) return;
    write.released = true;
    this.#inFlight -= write.bytes.length;
    const unflushed = this.#unflushed.get(write.owner);
    unflushed?.delete(write);
    if (unflushed?.size === 0) this.#unflushed.delete(write.owner);
  }
}
