import { Agent, type Dispatcher, errors as undiciErrors } from "undici";
import { GatewayError, UpstreamError } from "../../errors/errors.js";
import type { ClientGone, UpstreamResponse } from "../provider.js";
import { UpstreamCall } from "./upstream-call.js";

export interface UpstreamTimeouts {
  connectTimeoutMs: number;
  readTimeoutMs: number;
  /** The read timeout of streamed calls, when it differs (router_settings.stream_timeout). */
  streamReadTimeoutMs?: number | undefined;
  connectionsPerOrigin: number;
}

export interface UpstreamPost {
  /** The deployment's api_base (origin and path prefix). */
  apiBase: string;
  /** Appended to the api_base's path; may carry a query string. */
  path: string;
  headers: Record<string, string>;
  body: string | Buffer;
  signal: ClientGone;
  /** The deployment's own read timeout (ms), if it sets one. */
  readTimeoutMs: number | undefined;
  stream?: boolean;
}

/**
 * The HTTP side every provider shares: one undici Agent, a keep-alive pool per origin for the life of the
 * gateway, connect and read timeouts on every call, and one error kind (UpstreamError) for whatever goes wrong
 * on the way — connecting, waiting for headers, or mid-body. Calls go through undici's dispatch API
 * (providers/upstream-call.ts), the cheapest it has.
 */
export class HttpUpstream {
  private readonly agent: Agent;

  constructor(private readonly timeouts: UpstreamTimeouts) {
    this.agent = new Agent({
      connections: timeouts.connectionsPerOrigin,
      keepAliveTimeout: 30_000,
      connect: { timeout: timeouts.connectTimeoutMs },
      headersTimeout: timeouts.readTimeoutMs,
      bodyTimeout: timeouts.readTimeoutMs,
    });
  }

  async post(p: UpstreamPost): Promise<UpstreamResponse> {
    const call = new UpstreamCall(p.signal, toUpstreamError);
    this.dispatch(p, call);
    // Every failure arrives already told as UpstreamError (or as the client's abort): the call converts them.
    const head = await call.response;
    const contentType = head.headers["content-type"];
    const retryAfter = head.headers["retry-after"];
    return {
      status: head.status,
      contentType: typeof contentType === "string" ? contentType : "application/json",
      retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
      body: call,
    };
  }

  /**
   * The call itself, answered through `handler`'s callbacks (undici's dispatch API): what `post` wraps in a promise
   * and an iterator, and what a straight attempt (proxy/straight-attempt.ts) uses as it is. A call refused before it
   * was sent (a header value undici will not send) ends in `onResponseError` like any failed call.
   */
  dispatch(p: Omit<UpstreamPost, "signal">, handler: Dispatcher.DispatchHandler): void {
    const readTimeout = p.readTimeoutMs ?? (p.stream ? this.timeouts.streamReadTimeoutMs : undefined) ?? this.timeouts.readTimeoutMs;
    try {
      // Inside the try: an api_base that does not parse fails the call like any other refusal, never as a throw.
      const target = targetOf(p.apiBase);
      this.agent.dispatch(
        {
          origin: target.origin,
          path: `${target.basePath}${p.path}`,
          method: "POST",
          headers: p.headers,
          body: p.body,
          headersTimeout: readTimeout,
          bodyTimeout: readTimeout,
        },
        handler,
      );
    } catch (err) {
      handler.onResponseError?.(null as unknown as Dispatcher.DispatchController, err as Error);
    }
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

// An api_base is parsed once, not on every request: the origin picks undici's connection pool, the path is
// prefixed to the endpoint's.
const targets = new Map<string, { origin: string; basePath: string }>();
function targetOf(apiBase: string): { origin: string; basePath: string } {
  let target = targets.get(apiBase);
  if (!target) {
    const url = new URL(apiBase);
    target = { origin: url.origin, basePath: url.pathname.replace(/\/$/, "") };
    targets.set(apiBase, target);
  }
  return target;
}

export function toUpstreamError(err: unknown): unknown {
  // Already told (an in-process provider's refusal driven through dispatch: providers/forward-dispatch.ts).
  if (err instanceof GatewayError) return err;
  if (err instanceof undiciErrors.ConnectTimeoutError) return new UpstreamError("timed out connecting to the upstream model server", { code: "upstream_connect_timeout" });
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return new UpstreamError("the upstream model server did not answer in time", { code: "upstream_timeout" });
  }
  if ((err as Error).name === "AbortError" || err instanceof undiciErrors.RequestAbortedError) return err;
  const code = (err as { code?: string }).code ?? (err as { cause?: { code?: string } }).cause?.code;
  return new UpstreamError(`could not reach the upstream model server${code ? ` (${code})` : ""}`, { code: "upstream_unreachable" });
}

/** The whole of a (short) upstream body as text: error answers, JSON answers to translate. */
export async function readAll(body: UpstreamResponse["body"], maxChars = 16 * 1024 * 1024): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of body) {
    text += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    if (text.length > maxChars) throw new UpstreamError("the upstream answer is too large to translate", { code: "upstream_answer_too_large" });
  }
  return text + decoder.decode();
}
