import { OPENAI_API_BASE } from "../../config/models.js";
import type { Provider, UpstreamCall, UpstreamResponse } from "../provider.js";
import type { HttpUpstream } from "./http-upstream.js";

const PATHS: Partial<Record<UpstreamCall["endpoint"], string>> = {
  "chat.completions": "/chat/completions",
  completions: "/completions",
  embeddings: "/embeddings",
  responses: "/responses",
};

/**
 * OpenAI, and any OpenAI-compatible server (`openai/<model>` with an api_base). The Responses API is spoken natively
 * by OpenAI's own API only: other servers that call themselves OpenAI-compatible mostly lack it, so requests to them
 * are translated to chat completions (docs/providers.md).
 */
export class OpenAICompatibleProvider implements Provider {
  constructor(private readonly http: HttpUpstream) {}

  speaks(endpoint: UpstreamCall["endpoint"], deployment: UpstreamCall["deployment"]): boolean {
    if (endpoint === "responses") return (deployment.apiBase ?? OPENAI_API_BASE) === OPENAI_API_BASE;
    return endpoint === "chat.completions" || endpoint === "completions" || endpoint === "embeddings";
  }

  forward(call: UpstreamCall): Promise<UpstreamResponse> {
    const { deployment } = call;
    const headers: Record<string, string> = { "content-type": "application/json", accept: call.stream ? "text/event-stream" : "application/json" };
    if (deployment.apiKey) headers.authorization = `Bearer ${deployment.apiKey}`;
    return this.http.post({
      apiBase: deployment.apiBase ?? OPENAI_API_BASE,
      path: PATHS[call.endpoint]!,
      headers,
      body: call.rawBody ?? JSON.stringify(call.body),
      signal: call.signal,
      readTimeoutMs: deployment.timeoutMs,
      stream: call.stream,
    });
  }
}
