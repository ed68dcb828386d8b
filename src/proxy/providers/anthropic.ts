import { ANTHROPIC_API_BASE } from "../../config/models.js";
import { UpstreamError } from "../../errors/errors.js";
import type { Provider, UpstreamCall, UpstreamResponse } from "../provider.js";
import { DONE_FRAME, dataFrame, SseReader } from "../sse.js";
import { chatToMessagesRequest, MessagesToChatStream, messagesToChatResponse, upstreamStreamError } from "../translate/anthropic-from-chat.js";
import { type HttpUpstream, readAll } from "./http-upstream.js";

/** The API version every call names (Anthropic requires one); a deployment may set its own. */
export const ANTHROPIC_VERSION = "2023-06-01";

const PATHS: Partial<Record<UpstreamCall["endpoint"], string>> = {
  "chat.completions": "/v1/messages",
  messages: "/v1/messages",
  "messages.count_tokens": "/v1/messages/count_tokens",
};

/**
 * Anthropic's Messages API (`anthropic/<model>`). Requests in Anthropic's own shape (`/v1/messages`, its
 * count_tokens) go as they are and their answers come back untouched; chat completions are translated on the way
 * out and back, streams event by event (translate/anthropic-from-chat.ts). Failures are told in OpenAI's error shape
 * whatever the route, overloaded (529) as a retryable 503 (docs/providers.md).
 */
export class AnthropicProvider implements Provider {
  constructor(
    private readonly http: HttpUpstream,
    private readonly defaultMaxTokens: number,
  ) {}

  speaks(endpoint: UpstreamCall["endpoint"]): boolean {
    return PATHS[endpoint] !== undefined;
  }

  async forward(call: UpstreamCall): Promise<UpstreamResponse> {
    const { deployment } = call;
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: call.stream ? "text/event-stream" : "application/json",
      "anthropic-version": deployment.apiVersion ?? ANTHROPIC_VERSION,
    };
    if (deployment.apiKey) headers["x-api-key"] = deployment.apiKey;
    if (call.anthropicBeta) headers["anthropic-beta"] = call.anthropicBeta;
    const translated = call.endpoint === "chat.completions";
    let body: string | Buffer;
    let dropped: string[] = [];
    if (translated) {
      const request = chatToMessagesRequest(call.body, {
        upstreamModel: deployment.upstreamModel,
        defaultMaxTokens: this.defaultMaxTokens,
        dropParams: deployment.dropParams === true,
      });
      body = JSON.stringify(request.body);
      dropped = request.dropped;
    } else {
      body = call.rawBody ?? JSON.stringify(call.body);
    }
    const upstream = await this.http.post({
      apiBase: deployment.apiBase ?? ANTHROPIC_API_BASE,
      path: PATHS[call.endpoint]!,
      headers,
      body,
      signal: call.signal,
      readTimeoutMs: deployment.timeoutMs,
      stream: call.stream,
    });
    if (upstream.status >= 300) return failure(upstream);
    const extra = dropped.length > 0 ? { "gatehouse-dropped-params": dropped.join(",") } : undefined;
    if (!translated) return { ...upstream, headers: extra };
    const created = Math.floor(Date.now() / 1000);
    if (!call.stream) {
      const message = JSON.parse(await readAll(upstream.body)) as Record<string, unknown>;
      const answer = messagesToChatResponse(message, String(message.model ?? deployment.upstreamModel), created);
      return { status: 200, contentType: "application/json", headers: extra, body: [JSON.stringify(answer)] };
    }
    const includeUsage = (call.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const state = new MessagesToChatStream(deployment.upstreamModel, created, includeUsage);
    return { status: 200, contentType: "text/event-stream", headers: extra, body: chatStreamOf(upstream.body, state) };
  }
}

/** Anthropic's event stream as OpenAI chat chunks, ended by `[DONE]`; a broken stream throws (the client gets an error event). */
export async function* chatStreamOf(body: UpstreamResponse["body"], state: MessagesToChatStream): AsyncIterable<string> {
  const reader = new SseReader();
  const framesOf = (frames: ReturnType<SseReader["push"]>): string => {
    let out = "";
    for (const frame of frames) {
      if (frame.data === "") continue;
      let event: { type?: unknown };
      try {
        event = JSON.parse(frame.data);
      } catch {
        throw new UpstreamError("the upstream stream sent an event that is not JSON", { code: "upstream_stream_invalid" });
      }
      for (const chunk of state.push(event)) out += dataFrame(chunk);
    }
    return out;
  };
  for await (const chunk of body) {
    const out = framesOf(reader.push(chunk));
    if (out !== "") yield out;
  }
  const rest = framesOf(reader.end());
  state.end();
  yield rest + DONE_FRAME;
}

/**
 * Anthropic's error answer in OpenAI's shape (`{"error": {message, type, code}}`), which the relay maps like any
 * upstream's; overloaded (529) is thrown as its own answer, a retryable 503.
 */
async function failure(upstream: UpstreamResponse): Promise<UpstreamResponse> {
  const text = await readAll(upstream.body, 64 * 1024).catch(() => "");
  let error: { type?: unknown; message?: unknown } | undefined;
  try {
    error = (JSON.parse(text) as { error?: { type?: unknown; message?: unknown } }).error;
  } catch {
    error = undefined;
  }
  if (upstream.status === 529 || error?.type === "overloaded_error") throw upstreamStreamError({ type: "overloaded_error", message: error?.message });
  const body = error ? JSON.stringify({ error: { message: error.message, type: error.type, code: error.type } }) : text;
  return { ...upstream, contentType: "application/json", body: [body] };
}
