import type { Provider, UpstreamCall, UpstreamResponse } from "../provider.js";
import type { HttpUpstream } from "./http-upstream.js";

const PATHS: Partial<Record<UpstreamCall["endpoint"], string>> = {
  "chat.completions": "chat/completions",
  completions: "completions",
  embeddings: "embeddings",
};

/** The api-version sent when a deployment names none: Azure OpenAI's latest generally available one. */
export const AZURE_DEFAULT_API_VERSION = "2024-10-21";

/**
 * Azure OpenAI (`azure/<deployment>`): OpenAI's shapes, addressed by deployment name under the resource's
 * api_base (`/openai/deployments/{deployment}/…?api-version=`), authenticated by an `api-key` header. Chat,
 * completions and embeddings, streamed or not; the Responses API is translated to chat completions
 * (docs/providers.md).
 */
export class AzureProvider implements Provider {
  constructor(private readonly http: HttpUpstream) {}

  speaks(endpoint: UpstreamCall["endpoint"]): boolean {
    return PATHS[endpoint] !== undefined;
  }

  forward(call: UpstreamCall): Promise<UpstreamResponse> {
    const { deployment } = call;
    const headers: Record<string, string> = { "content-type": "application/json", accept: call.stream ? "text/event-stream" : "application/json" };
    if (deployment.apiKey) headers["api-key"] = deployment.apiKey;
    const version = encodeURIComponent(deployment.apiVersion ?? AZURE_DEFAULT_API_VERSION);
    return this.http.post({
      apiBase: deployment.apiBase!,
      path: `/openai/deployments/${encodeURIComponent(deployment.upstreamModel)}/${PATHS[call.endpoint]}?api-version=${version}`,
      headers,
      body: call.rawBody ?? JSON.stringify(call.body),
      signal: call.signal,
      readTimeoutMs: deployment.timeoutMs,
      stream: call.stream,
    });
  }
}
