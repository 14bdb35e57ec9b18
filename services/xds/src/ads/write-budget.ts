// Bounds the response bytes being written to all streams at once. Responses are shared
// pre-encoded buffers, but grpc-js frames each message into a copy of its own per stream and
// holds that copy until the socket has taken it. A fleet syncing at once — a replica starting,
// or a reconnect storm — would otherwise hold one copy of the whole configuration per Envoy
// (1,000 Envoys × 10,000 services measured ~500 MB of such copies).
//
// Each stream has one write at a time against the budget; its later writes wait behind it (as
// they would in the stream anyway), so streams take turns in the order they asked. A write gives
// its bytes back once flushed, or when its stream closes. An Envoy that stops reading (its
// connection still alive, answering keepalives) must not hold everyone else up: a write not
// flushed within `stallMs` stops counting, and the stream's owner is told to drop it. The stream
// then ends once Envoy reads again, and Envoy reconnects (to this replica or another); an Envoy
// that answers nothing at all is cut by the keepalive.

/** Writes `bytes` to a stream, calling `flushed` once the transport has taken them. */
export type Writer = (bytes: Buffer, flushed: () => void) => void;

interface Write {
  bytes: Buffer;
  writer: Writer;
}

interface StreamWrites {
  owner: object;
  waiting: Write[];
  writing: Write | undefined;
  /** Bytes of `writing` still counted against the budget (0 once stalled). */
  counted: number;
  stallTimer: NodeJS.Timeout | undefined;
}

/** A stream whose response stays unflushed this long is taken as not reading (onStall). */
export const DEFAULT_STALL_MS = 30_000;

export class WriteBudget {
  readonly #limit: number;
  readonly #stallMs: number;
  readonly #onStall: (owner: object) => void;
  #inFlight = 0;
  #stalled = 0;
  /** Streams whose next write waits for the budget, in the order they asked. */
  readonly #turns: StreamWrites[] = [];
  readonly #streams = new Map<object, StreamWrites>();

  constructor(limitBytes: number, options: { stallMs?: number; onStall?: (owner: object) => void } = {}) {
    this.#limit = limitBytes;
    this.#stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    this.#onStall = options.onStall ?? (() => {});
  }

  /** Bytes written but not yet flushed (stalled writes excepted). */
  get inFlightBytes(): number {
    return this.#inFlight;
  }

  /** Streams whose next write waits for the budget. */
  get queued(): number {
    return this.#turns.length;
  }

  /** Streams that have had a write not flushed within the stall time, since the start. */
  get stalled(): number {
    return this.#stalled;
  }

  /** Writes now if the budget allows and no stream waits before this one; otherwise queues it. */
  write(owner: object, bytes: Buffer, writer: Writer): void {
    let stream = this.#streams.get(owner);
    if (!stream) {
      stream = { owner, waiting: [], writing: undefined, counted: 0, stallTimer: undefined };
      this.#streams.set(owner, stream);
    }
    stream.waiting.push({ bytes, writer });
    if (!stream.writing && stream.waiting.length === 1) this.#turns.push(stream);
    this.#drain();
  }

  /** The stream closed: its waiting writes are dropped, its unflushed bytes given back. */
  forget(owner: object): void {
    const stream = this.#streams.get(owner);
    if (!stream) return;
    this.#streams.delete(owner);
    this.#settle(stream);
    stream.waiting.length = 0;
    const turn = this.#turns.indexOf(stream);
    if (turn >= 0) this.#turns.splice(turn, 1);
    this.#drain();
  }

  #drain(): void {
    // A write larger than the whole budget still goes, alone.
    while (this.#turns.length > 0) {
      const next = this.#turns[0]!.waiting[0]!;
      if (this.#inFlight > 0 && this.#inFlight + next.bytes.length > this.#limit) return;
      this.#start(this.#turns.shift()!);
    }
  }

  #start(stream: StreamWrites): void {
    const write = stream.waiting.shift()!;
    stream.writing = write;
    stream.counted = write.bytes.length;
    this.#inFlight += write.bytes.length;
    stream.stallTimer = setTimeout(() => this.#stall(stream), this.#stallMs).unref();
    write.writer(write.bytes, () => {
      if (stream.writing !== write) return; // the stream was forgotten meanwhile
      this.#settle(stream);
      if (stream.waiting.length > 0) this.#turns.push(stream);
      this.#drain();
    });
  }

  #stall(stream: StreamWrites): void {
    this.#stalled++;
    this.#inFlight -= stream.counted;
    stream.counted = 0;
    this.#onStall(stream.owner);
    this.#drain();
  }

  /** The stream's current write is over (flushed, or the stream closed). */
  #settle(stream: StreamWrites): void {
    clearTimeout(stream.stallTimer);
    this.#inFlight -= stream.counted;
    stream.counted = 0;
    stream.writing = undefined;
  }
}
