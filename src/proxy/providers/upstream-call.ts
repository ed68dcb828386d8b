import type { Dispatcher } from "undici";
import type { ClientGone, WholeBody } from "../provider.js";

// A stream's reader slower than its upstream holds at most this much before the upstream socket is paused.
const HIGH_WATER_BYTES = 256 * 1024;

type Settle = { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (err: unknown) => void };
type Collect = { resolve: (chunks: Buffer[] | null) => void; reject: (err: unknown) => void; maxBytes: number };

/**
 * One upstream call as undici's dispatch handler (its lowest-level API): the answer's head resolves `head`, its
 * body arrives as a queue of the parser's own buffers read by one async iterator. Against undici's `request()`,
 * there is no Readable stream, no AbortSignal wiring and no header object per call beyond the one the parser
 * makes: on the gateway's hot path that was a third of a relay's CPU (docs/performance.md).
 *
 * Backpressure: past HIGH_WATER_BYTES unread the upstream socket is paused, and resumed once the reader caught up.
 * A reader that stops early (a client gone, a failed write) aborts the call, as destroying undici's body does.
 * A short answer can also be taken whole (`whole`): one promise for the body, however many chunks it came in.
 */
export class UpstreamCall implements Dispatcher.DispatchHandler, AsyncIterator<Uint8Array>, AsyncIterable<Uint8Array>, WholeBody {
  /** performance.now() when the answer's last byte arrived (0 until then): where the gateway's own time resumes. */
  endedAt = 0;
  private controller: Dispatcher.DispatchController | null = null;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private ended = false;
  private failure: unknown = null;
  private waiting: Settle | null = null;
  /** A reader waiting for the whole answer (`whole`); the queue is not paused below its limit meanwhile. */
  private collecting: Collect | null = null;
  private head: { resolve: (h: UpstreamHead) => void; reject: (err: unknown) => void } | null = null;
  readonly response: Promise<UpstreamHead>;

  constructor(
    private readonly signal: ClientGone,
    private readonly toError: (err: unknown) => unknown,
  ) {
    this.response = new Promise((resolve, reject) => {
      this.head = { resolve, reject };
    });
    if (signal.aborted) this.onClientGone();
    // `on`, not `once`: the signal fires once, and finish() removes the listener (once would wrap it per call).
    else signal.on("abort", this.onClientGone);
  }

  // --- undici's side ---

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.signal.aborted) controller.abort(clientGoneError());
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx: the answer's head is still to come
    const head = this.head;
    this.head = null;
    head?.resolve({ status: statusCode, headers });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const waiting = this.waiting;
    if (waiting !== null) {
      this.waiting = null;
      waiting.resolve({ value: chunk, done: false });
      return;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    const collecting = this.collecting;
    if (collecting !== null) {
      if (this.queuedBytes <= collecting.maxBytes) return;
      // Too long to take whole: the reader iterates instead, from what is queued, and backpressure applies again.
      this.collecting = null;
      collecting.resolve(null);
    }
    if (this.queuedBytes > HIGH_WATER_BYTES && !controller.paused) controller.pause();
  }

  onResponseEnd(): void {
    this.endedAt = performance.now();
    this.finish(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.finish(this.toError(err));
  }

  // --- the reader's side ---

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.queue.shift();
    if (chunk !== undefined) {
      this.queuedBytes -= chunk.length;
      if (this.controller?.paused && this.queuedBytes <= HIGH_WATER_BYTES / 2) this.controller.resume();
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  whole(maxBytes: number): Promise<Buffer[] | null> {
    if (this.queuedBytes > maxBytes) return Promise.resolve(null);
    if (this.ended) return this.failure !== null ? Promise.reject(this.failure) : Promise.resolve(this.takeQueue());
    // The socket may have been paused before the reader came; the whole answer is awaited now, so it must flow.
    if (this.controller?.paused) this.controller.resume();
    return new Promise((resolve, reject) => {
      this.collecting = { resolve, reject, maxBytes };
    });
  }

  private takeQueue(): Buffer[] {
    const chunks = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    return chunks;
  }

  /** The reader stopped before the end: nobody will read the rest, so the call is aborted. */
  return(): Promise<IteratorResult<Uint8Array>> {
    if (!this.ended) this.controller?.abort(clientGoneError());
    this.queue.length = 0;
    return Promise.resolve(DONE);
  }

  private readonly onClientGone = (): void => {
    const err = clientGoneError();
    this.controller?.abort(err);
    this.finish(err);
  };

  private finish(failure: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = failure;
    this.signal.removeListener("abort", this.onClientGone);
    const head = this.head;
    this.head = null;
    if (head !== null) {
      head.reject(failure ?? this.toError(new Error("the upstream call ended without an answer")));
      return;
    }
    const collecting = this.collecting;
    if (collecting !== null) {
      this.collecting = null;
      if (failure !== null) collecting.reject(failure);
      else collecting.resolve(this.takeQueue());
      return;
    }
    const waiting = this.waiting;
    this.waiting = null;
    if (waiting === null) return;
    if (failure !== null) waiting.reject(failure);
    else waiting.resolve(DONE);
  }
}

export interface UpstreamHead {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

const DONE: IteratorResult<Uint8Array> = Object.freeze({ value: undefined, done: true });

function clientGoneError(): Error {
  return Object.assign(new Error("the client went away"), { name: "AbortError" });
}
