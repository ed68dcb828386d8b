import { Agent, errors as undiciErrors } from "undici";
import { UpstreamError } from "../../errors/errors.js";
import type { Provider, UpstreamCall, UpstreamResponse } from "../provider.js";

const PATHS = { "chat.completions": "/chat/completions", completions: "/completions", embeddings: "/embeddings" } as const;

export interface UpstreamTimeouts {
  connectTimeoutMs: number;
  readTimeoutMs: number;
  connectionsPerOrigin: number;
}

/**
 * Any OpenAI-compatible server (`openai/<model>` with an api_base). One undici Agent keeps a keep-alive
 * pool per origin for the life of the gateway; connect and read timeouts bound every call.
 */
export class OpenAICompatibleProvider implements Provider {
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

  async forward(call: UpstreamCall): Promise<UpstreamResponse> {
    const { deployment } = call;
    const readTimeout = deployment.timeoutMs ?? this.timeouts.readTimeoutMs;
    const headers: Record<string, string> = { "content-type": "application/json", accept: call.stream ? "text/event-stream" : "application/json" };
    if (deployment.apiKey) headers.authorization = `Bearer ${deployment.apiKey}`;
    try {
      const target = targetOf(deployment.apiBase);
      const res = await this.agent.request({
        origin: target.origin,
        path: `${target.basePath}${PATHS[call.endpoint]}`,
        method: "POST",
        headers,
        body: call.rawBody ?? JSON.stringify(call.body),
        signal: call.signal,
        headersTimeout: readTimeout,
        bodyTimeout: readTimeout,
      });
      const contentType = String(res.headers["content-type"] ?? "application/json");
      const retryAfter = res.headers["retry-after"];
      return { status: res.statusCode, contentType, retryAfter: typeof retryAfter === "string" ? retryAfter : undefined, body: guardBody(res.body) };
    } catch (err) {
      throw toUpstreamError(err);
    }
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

// An api_base is parsed once, not on every request: the origin picks undici's connection pool, the path is
// prefixed to the endpoint's.
const targets = new Map<string, { origin: string; basePath: string }>();
function targetOf(apiBase: string | undefined): { origin: string; basePath: string } {
  const key = apiBase ?? "";
  let target = targets.get(key);
  if (!target) {
    const url = new URL(key);
    target = { origin: url.origin, basePath: url.pathname.replace(/\/$/, "") };
    targets.set(key, target);
  }
  return target;
}

/** Re-throws body read failures (a read timeout mid-stream) as UpstreamError, so callers see one error kind. */
async function* guardBody(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  try {
    yield* body;
  } catch (err) {
    throw toUpstreamError(err);
  }
}

export function toUpstreamError(err: unknown): unknown {
  if (err instanceof UpstreamError) return err;
  if (err instanceof undiciErrors.ConnectTimeoutError)
    return new UpstreamError(504, "timed out connecting to the upstream model server", "upstream_connect_timeout", "timeout_error");
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return new UpstreamError(504, "the upstream model server did not answer in time", "upstream_timeout", "timeout_error");
  }
  if ((err as Error).name === "AbortError" || err instanceof undiciErrors.RequestAbortedError) return err;
  const code = (err as { code?: string }).code ?? (err as { cause?: { code?: string } }).cause?.code;
  return new UpstreamError(502, `could not reach the upstream model server${code ? ` (${code})` : ""}`, "upstream_unreachable");
}
