import { OPENAI_API_BASE } from "../../config/models.js";
import type { Provider, UpstreamCall, UpstreamResponse } from "../provider.js";
import type { Dispatcher } from "undici";
import type { HttpUpstream, UpstreamPost } from "./http-upstream.js";

const PATHS: Partial<Record<UpstreamCall["endpoint"], string>> = {
  "chat.completions": "/chat/completions",
  completions: "/completions",
  embeddings: "/embeddings",
  responses: "/responses",
};

/**
 * OpenAI, and any OpenAI-compatible server (`openai/<model>` with an api_base). The Responses API is spoken natively
 * by OpenAI's own API only (a deployment without an api_base, config/models.ts): other servers that call themselves
 * OpenAI-compatible mostly lack it, so requests to them are translated to chat completions (docs/providers.md).
 */
export class OpenAICompatibleProvider implements Provider {
  constructor(private readonly http: HttpUpstream) {}

  speaks(endpoint: UpstreamCall["endpoint"], deployment: UpstreamCall["deployment"]): boolean {
    if (endpoint === "responses") return deployment.speaksResponses === true;
    return endpoint === "chat.completions" || endpoint === "completions" || endpoint === "embeddings";
  }

  forward(call: UpstreamCall): Promise<UpstreamResponse> {
    return this.http.post(postOf(call, call.signal));
  }

  dispatch(call: Omit<UpstreamCall, "signal">, handler: Dispatcher.DispatchHandler): void {
    this.http.dispatch(postOf(call, undefined), handler);
  }
}

/** The signal is a parameter, not spread in by the caller: a spread copy given a field it lacked is dear in V8. */
function postOf<Signal extends UpstreamPost["signal"] | undefined>(call: Omit<UpstreamCall, "signal">, signal: Signal): Omit<UpstreamPost, "signal"> & { signal: Signal } {
  const { deployment } = call;
  return {
    apiBase: deployment.apiBase ?? OPENAI_API_BASE,
    path: PATHS[call.endpoint]!,
    headers: headersOf(deployment, call.stream),
    body: call.rawBody ?? JSON.stringify(call.body),
    readTimeoutMs: deployment.timeoutMs,
    stream: call.stream,
    signal,
  };
}

/**
 * A deployment's request headers, made once for each of its plain and streamed calls and sent as they are (undici
 * only reads them). Keyed by the deployment object: a model changed or reloaded is a new object, with new headers.
 */
const headersByDeployment = new WeakMap<UpstreamCall["deployment"], [plain: Record<string, string>, stream: Record<string, string>]>();
function headersOf(deployment: UpstreamCall["deployment"], stream: boolean): Record<string, string> {
  let pair = headersByDeployment.get(deployment);
  if (pair === undefined) {
    const make = (accept: string) => {
      const headers: Record<string, string> = { "content-type": "application/json", accept };
      if (deployment.apiKey) headers.authorization = `Bearer ${deployment.apiKey}`;
      return Object.freeze(headers);
    };
    pair = [make("application/json"), make("text/event-stream")];
    headersByDeployment.set(deployment, pair);
  }
  return pair[stream ? 1 : 0];
}
