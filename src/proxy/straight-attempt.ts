import type { Dispatcher } from "undici";
import type { GatewayError } from "../errors/errors.js";
import type { UsageMeter } from "../limits/usage-meter.js";
import type { AttemptCharge } from "./attempt-charge.js";
import type { DeploymentLoad } from "./deployment-load.js";
import type { UpstreamCall, UpstreamResponse } from "./provider.js";
import { toUpstreamError } from "./providers/http-upstream.js";
import { type DirectWriter, MAX_ERROR_BODY, type RelayRecord } from "./relay-record.js";

export interface StraightAttemptParts {
  meter: UsageMeter | undefined;
  charge: AttemptCharge;
  /** The routing headers of the answer (attempts.ts answerHeaders). */
  routing: readonly string[];
  load: DeploymentLoad;
  /** performance.now() when the call was made: the deployment's latency runs from here to its answer. */
  startedAt: number;
  /** What the client is told of an upstream refusal (relay.ts upstreamFailure). */
  refused: (upstream: UpstreamResponse) => Promise<GatewayError>;
}

/**
 * One attempt relayed straight (docs/performance.md, "The straight path"): undici's dispatch handler writes the
 * answer to the client from its own callbacks — the head when upstream's arrives, the chunks metered and handed to
 * the writer as they come (a stream's, one read from upstream at a time), the charge settled and the answer ended at
 * upstream's end — with no promise or iterator per step. `done` settles once, when the attempt is over.
 *
 * It does what the general attempt (relay.ts) does with the same call, and only that, so the two answer alike
 * (the request-behaviour tests run against both):
 * - a refusal (3xx–5xx) or a failure before the answer began rejects `done` with the error the general attempt
 *   throws, and the relay's loop retries, falls back or tells it, as for any attempt;
 * - a stream begins at its first chunk, not its head: a failure in between is still one to retry;
 * - once the answer began, a failure is the writer's to tell (in-band or by closing), and a client that left ends
 *   the attempt quietly;
 * - the socket's backpressure pauses upstream, and its drain resumes it.
 * The relay sends only what may go straight: a native OpenAI-shaped call, no level with limits (nothing to wait on
 * before the end), a provider with `dispatch`.
 */
export class StraightAttempt implements Dispatcher.DispatchHandler {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (err: unknown) => void;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private contentType = "application/json";
  /** The answer was handed to the writer (its head for a stream, its start for JSON). */
  private begun = false;
  private over = false;
  /** A stream's chunks of the read in progress, passed on once it is done (passBurst); null when none is held. */
  private burst: Buffer[] | null = null;
  /** An upstream refusal's body, being read for the client's message; null while the answer is not a refusal. */
  private refusal: { text: string; retryAfter: string | undefined } | null = null;

  constructor(
    private readonly x: RelayRecord,
    private readonly out: DirectWriter,
    private readonly call: Omit<UpstreamCall, "signal">,
    private readonly parts: StraightAttemptParts,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    const signal = x.abort!;
    if (signal.aborted) this.onClientGone();
    // `on`, not `once`: the signal fires once, and finish() removes the listener (once would wrap it per call).
    else signal.on("abort", this.onClientGone);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.over) controller.abort(clientGoneError());
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200 || this.over) return; // 1xx: the answer's head is still to come
    this.status = statusCode;
    const contentType = headers["content-type"];
    if (typeof contentType === "string") this.contentType = contentType;
    if (statusCode >= 300) {
      const retryAfter = headers["retry-after"];
      this.refusal = { text: "", retryAfter: typeof retryAfter === "string" ? retryAfter : undefined };
      return;
    }
    if (!this.call.stream) this.begin();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.over) return;
    const refusal = this.refusal;
    if (refusal !== null) {
      if (refusal.text.length < MAX_ERROR_BODY) refusal.text += chunk.toString("utf8");
      return;
    }
    try {
      if (!this.begun) this.begin();
      if (!this.call.stream) {
        this.pass(chunk);
        return;
      }
      // A stream's chunks that arrive in one read from upstream are passed on together once that read is done: one
      // meter pass and one write instead of one per chunk. Tokens arriving one by one are a read each, and pass at once.
      if (this.burst === null) {
        this.burst = [chunk];
        queueMicrotask(this.passBurst);
      } else this.burst.push(chunk);
    } catch (err) {
      this.brokenAnswer(err); // first: the abort below may call onResponseError at once
      controller.abort(err as Error);
    }
  }

  /** Bytes of the answer, metered, to the writer; upstream paused while the client's socket is full. */
  private pass(chunk: Buffer): void {
    const meter = this.parts.meter;
    const bytes = meter ? meter.pass(chunk) : chunk;
    const controller = this.controller;
    if (bytes.length !== 0 && !this.out.write(bytes) && controller !== null && !controller.paused) {
      controller.pause();
      this.out.onDrain(() => controller.resume());
    }
  }

  /** The stream's chunks of the last read (burst), passed on. */
  private readonly passBurst = (): void => {
    const burst = this.burst;
    this.burst = null;
    if (burst === null || this.over) return;
    try {
      this.pass(burst.length === 1 ? burst[0]! : Buffer.concat(burst));
    } catch (err) {
      this.brokenAnswer(err);
      this.controller?.abort(err as Error);
    }
  };

  onResponseEnd(): void {
    if (this.over) return;
    const refusal = this.refusal;
    if (refusal !== null) {
      this.over = true;
      const upstream: UpstreamResponse = { status: this.status, contentType: this.contentType, retryAfter: refusal.retryAfter, body: [refusal.text] };
      this.parts.refused(upstream).then(this.failed, this.failed);
      return;
    }
    const { x } = this;
    try {
      if (!this.begun) this.begin(); // a stream that ended without a chunk: an empty answer, as the general attempt sends
      this.passBurst();
      if (this.over) return; // passing the last read failed: told already
      x.upstreamEndedAt = performance.now();
      const last = this.parts.meter?.end() ?? "";
      // Settled before the end reaches the client, so its next request is counted against it. With no level limited
      // (the only requests relayed straight), that is the spend recorded here and now, with nothing to wait on.
      void this.parts.charge.settle();
      this.out.end(last);
      x.answeredAt = performance.now();
    } catch (err) {
      this.brokenAnswer(err);
      return;
    }
    this.finish();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    if (this.over) return;
    const error = toUpstreamError(err);
    if (!this.begun || this.refusal !== null) {
      this.over = true;
      this.failed(error);
      return;
    }
    this.passBurst(); // what arrived before the failure goes out before it is told
    this.brokenAnswer(error);
  }

  /** Upstream answered: the answer is the client's from now on, never retried. */
  private begin(): void {
    const { x, parts } = this;
    this.begun = true;
    parts.charge.relayed = true;
    parts.load.answeredIn(this.call.deployment.id, performance.now() - parts.startedAt);
    parts.load.outcome(this.call.deployment.id, "answered");
    x.answering = true;
    this.out.begin(this.status, this.contentType, this.call.stream, parts.routing);
  }

  /** The answer failed after it began: quietly when the client left; told by the writer, or as an error answer. */
  private brokenAnswer(err: unknown): void {
    if (this.over) return;
    this.over = true;
    if (this.x.abort!.aborted || this.out.broken(err)) this.finish();
    else this.failed(err);
  }

  private readonly onClientGone = (): void => {
    if (this.over) return;
    const err = clientGoneError();
    // Before the answer began, the attempt failed as the general one does (the relay stops: the client is gone);
    // after, it ends quietly. First: the abort below may call onResponseError at once.
    if (this.begun) this.finish();
    else this.failed(err);
    this.controller?.abort(err);
  };

  private finish(): void {
    this.over = true;
    this.x.abort!.removeListener("abort", this.onClientGone);
    this.resolve();
  }

  private readonly failed = (err: unknown): void => {
    this.over = true;
    this.x.abort!.removeListener("abort", this.onClientGone);
    this.reject(err);
  };
}

function clientGoneError(): Error {
  return Object.assign(new Error("the client went away"), { name: "AbortError" });
}
