import type { ModelDeployment } from "../../config/settings.js";
import type { GatewayError } from "../../errors/errors.js";
import { jsonUsageMeter, sseUsageMeter } from "../../limits/usage-meter.js";
import type { Endpoint } from "../provider.js";
import { assertRequestShape } from "../request-shape.js";
import { dataFrame } from "../sse.js";
import { type InboundApi, openAIErrorBody } from "./inbound-api.js";

/** Fields only Gatehouse understands; never sent to a real upstream. */
const GATEWAY_ONLY_FIELDS = ["mock_response"] as const;

/**
 * OpenAI's chat completions, completions and embeddings: the shapes every provider meets in (the others are
 * translated into chat). Most configs name a model as upstream does; then the client's bytes go upstream untouched.
 */
function openAIApi(endpoint: "chat.completions" | "completions" | "embeddings"): InboundApi {
  const streams = (body: Record<string, unknown>) => endpoint !== "embeddings" && body.stream === true;
  const clientAskedForUsage = (body: Record<string, unknown>) => streams(body) && (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  return {
    endpoint,
    check: (body) => assertRequestShape(endpoint, body),
    streams,
    maxOutputTokens: (body) => positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens),
    nativeBody(body: Record<string, unknown>, deployment: ModelDeployment, metered: boolean, raw: Buffer) {
      // Streams report usage only when asked; Gatehouse asks whenever it has to charge the request.
      const askForUsage = metered && streams(body) && !clientAskedForUsage(body);
      const keepsGatewayFields = deployment.provider === "mock" || !hasGatewayOnlyField(body);
      const sameModel = deployment.upstreamModel === body.model;
      if (!askForUsage && sameModel && keepsGatewayFields) return null;
      // Copied field by field, not spread: V8 makes a spread copy that is given a field it lacked (stream_options
      // here) some twenty times dearer than this loop — a microsecond on every streamed request.
      const upstream: Record<string, unknown> = {};
      for (const name in body) upstream[name] = body[name];
      upstream.model = deployment.upstreamModel;
      if (deployment.provider !== "mock") for (const field of GATEWAY_ONLY_FIELDS) delete upstream[field];
      if (askForUsage) upstream.stream_options = { ...(body.stream_options as object | undefined), include_usage: true };
      // Asking a stream for its usage is the only change: the field goes in front of the client's own bytes (the
      // body has no stream_options, and no key twice: duplicates are refused), instead of serializing it all again.
      if (askForUsage && sameModel && keepsGatewayFields && body.stream_options === undefined) return { body: upstream, raw: withUsageAsked(raw) };
      return { body: upstream };
    },
    meter: (body, stream) => (stream ? sseUsageMeter(clientAskedForUsage(body)) : jsonUsageMeter()),
    errorBody: openAIErrorBody,
    streamError: (error: GatewayError) => dataFrame(error.toBody()),
  };
}

export const CHAT_COMPLETIONS: InboundApi = openAIApi("chat.completions");
export const COMPLETIONS: InboundApi = openAIApi("completions");
export const EMBEDDINGS: InboundApi = openAIApi("embeddings");

export const OPENAI_APIS: Readonly<Record<"chat.completions" | "completions" | "embeddings", InboundApi>> = {
  "chat.completions": CHAT_COMPLETIONS,
  completions: COMPLETIONS,
  embeddings: EMBEDDINGS,
};

export type OpenAIEndpoint = Extract<Endpoint, "chat.completions" | "completions" | "embeddings">;

const ASK_FOR_USAGE = Buffer.from('"stream_options":{"include_usage":true},');

/** `{"stream_options":{"include_usage":true}, …the client's fields}`: the raw body is a JSON object with fields. */
function withUsageAsked(raw: Buffer): Buffer {
  const out = Buffer.allocUnsafe(raw.length + ASK_FOR_USAGE.length);
  if (raw[0] === 0x7b /* { */) {
    // The usual body, `{` first: the client's bytes laid after room for the ask, whose last byte (its comma) then
    // covers the client's `{`. Two whole-buffer copies: slicing the body for Buffer.copy cost more than the copies.
    out.set(raw, ASK_FOR_USAGE.length);
    out[0] = 0x7b;
    out.set(ASK_FOR_USAGE, 1);
    return out;
  }
  const open = raw.indexOf(0x7b /* { */);
  raw.copy(out, 0, 0, open + 1);
  ASK_FOR_USAGE.copy(out, open + 1);
  raw.copy(out, open + 1 + ASK_FOR_USAGE.length, open + 1);
  return out;
}

function hasGatewayOnlyField(request: Record<string, unknown>): boolean {
  for (const field of GATEWAY_ONLY_FIELDS) if (field in request) return true;
  return false;
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined;
}
