import type { Dispatcher } from "undici";
import { ClientGone, type UpstreamCall, type UpstreamResponse } from "../provider.js";

/**
 * A provider's `forward` driven through undici's dispatch callbacks: for a provider that answers in-process (the
 * mock), so a straight attempt (proxy/straight-attempt.ts) can be made to it as to a server, and the tests that pin
 * a request's behaviour run through both of the relay's ways. The handler sees what undici would show it: the
 * head, each chunk as a Buffer, the end or an error; pausing holds the next chunk until it resumes, and an abort
 * stops the answer (the call's signal tells `forward`).
 */
export function dispatchThroughForward(forward: (call: UpstreamCall) => Promise<UpstreamResponse>, call: Omit<UpstreamCall, "signal">, handler: Dispatcher.DispatchHandler): void {
  const controller = new InProcessController();
  handler.onRequestStart?.(controller, {});
  if (controller.aborted) {
    handler.onResponseError?.(controller, controller.reason);
    return;
  }
  void relay(forward({ ...call, signal: controller.signal }), controller, handler);
}

async function relay(answer: Promise<UpstreamResponse>, controller: InProcessController, handler: Dispatcher.DispatchHandler): Promise<void> {
  try {
    const upstream = await answer;
    const headers: Record<string, string> = { "content-type": upstream.contentType };
    if (upstream.retryAfter !== undefined) headers["retry-after"] = upstream.retryAfter;
    if (controller.aborted) throw controller.reason;
    handler.onResponseStart?.(controller, upstream.status, headers, "");
    for await (const chunk of upstream.body) {
      if (controller.paused) await controller.resumed();
      if (controller.aborted) throw controller.reason;
      handler.onResponseData?.(controller, typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    if (controller.aborted) throw controller.reason;
    handler.onResponseEnd?.(controller, {});
  } catch (err) {
    if (!controller.ended) handler.onResponseError?.(controller, err as Error);
  } finally {
    controller.ended = true;
  }
}

class InProcessController implements Dispatcher.DispatchController {
  readonly signal = new ClientGone();
  aborted = false;
  paused = false;
  reason: Error = new Error("aborted");
  ended = false;
  private waiting: (() => void) | null = null;

  abort(reason: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.signal.abort();
    this.resume();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }

  resumed(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }
}
