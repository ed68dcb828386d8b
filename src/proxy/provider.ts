import type { Dispatcher } from "undici";
import type { ModelDeployment } from "../config/settings.js";

/**
 * "The client went away", made once per proxied request and told at most once. Its listeners are the attempts and
 * writers of that request (an `on("abort")` each, removed when they finish). Not an EventEmitter: one costs a
 * microsecond a request to make and to listen on, for an event that nearly never fires.
 */
export class ClientGone {
  aborted = false;
  private listeners: Array<() => void> | null = null;

  on(_event: "abort", listener: () => void): this {
    if (this.listeners === null) this.listeners = [listener];
    else this.listeners.push(listener);
    return this;
  }

  /** The same as `on`: the signal fires once, and its listeners are dropped when it does. */
  once(event: "abort", listener: () => void): this {
    return this.on(event, listener);
  }

  removeListener(_event: "abort", listener: () => void): this {
    const listeners = this.listeners;
    if (listeners === null) return this;
    const i = listeners.lastIndexOf(listener);
    if (i >= 0) listeners.splice(i, 1);
    return this;
  }

  /** Listeners still attached (each attempt removes its own when it finishes). */
  listenerCount(_event: "abort"): number {
    return this.listeners?.length ?? 0;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const listeners = this.listeners;
    this.listeners = null;
    if (listeners !== null) for (const listener of listeners) listener();
  }
}

/**
 * What a call asks of the upstream: OpenAI's chat, completions, embeddings and Responses API, Anthropic's Messages
 * API and its token count. A provider takes the ones it `speaks`; the relay translates the others into chat.
 */
export type Endpoint = "chat.completions" | "completions" | "embeddings" | "responses" | "messages" | "messages.count_tokens";

export interface UpstreamCall {
  endpoint: Endpoint;
  deployment: ModelDeployment;
  /** The client's body with `model` already set to the upstream model name. */
  body: Record<string, unknown>;
  /** The client's bytes, when `body` is exactly what the client sent: forwarded as they are. */
  rawBody?: Buffer | undefined;
  stream: boolean;
  /** Aborted when the client goes away, so the upstream call stops too. */
  signal: ClientGone;
  /** The client's `anthropic-beta` header, passed on to Anthropic (features a client opts into). */
  anthropicBeta?: string | undefined;
}

export interface UpstreamResponse {
  status: number;
  contentType: string;
  /** Upstream's Retry-After, relayed with a 429. */
  retryAfter?: string | undefined;
  /** Bytes as they arrive; for streams, SSE frames relayed to the client one by one. */
  body: AsyncIterable<Uint8Array | string> | Iterable<string>;
  /** Headers of the gateway's own for the client (the parameters a deployment dropped). */
  headers?: Record<string, string> | undefined;
}

/**
 * An upstream body that can hand over a short answer whole (providers/upstream-call.ts): one promise, resolved at
 * the answer's end, instead of one per chunk and one for the end. Null when the answer is longer than `maxBytes`:
 * nothing is lost, the body is then read by iterating.
 */
export interface WholeBody {
  whole(maxBytes: number): Promise<Uint8Array[] | null>;
}

export function readsWhole(body: UpstreamResponse["body"]): body is UpstreamResponse["body"] & WholeBody {
  return typeof (body as Partial<WholeBody>).whole === "function";
}

export interface Provider {
  /** Does this provider take calls to `endpoint` for this deployment (natively, or translating them itself)? */
  speaks(endpoint: Endpoint, deployment: ModelDeployment): boolean;
  forward(call: UpstreamCall): Promise<UpstreamResponse>;
  /**
   * The same call as `forward`, answered through undici's callbacks: present on a provider whose calls go out as
   * the client's request is and whose answers come back in the client's shape (OpenAI-compatible ones), which a
   * straight attempt relays without a promise per step (proxy/straight-attempt.ts).
   */
  dispatch?(call: Omit<UpstreamCall, "signal">, handler: Dispatcher.DispatchHandler): void;
}
