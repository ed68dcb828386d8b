import type { ModelDeployment } from "../../config/settings.js";
import { BadRequestError, type GatewayError } from "../../errors/errors.js";
import { tokensFromAnthropicUsage } from "../../limits/pricing.js";
import { anthropicSseUsageMeter, jsonUsageMeter } from "../../limits/usage-meter.js";
import { typedFrame } from "../sse.js";
import { ChatToMessagesStream, chatToMessagesResponse, messagesToChatRequest } from "../translate/messages-over-chat.js";
import type { InboundApi } from "./inbound-api.js";

/**
 * Anthropic's Messages API (`POST /v1/messages`), as Claude Code and the Anthropic SDK speak it. Anthropic
 * deployments get the request as it came and their events pass through unchanged (usage read on the way); every
 * other deployment gets it translated into chat completions (translate/messages-over-chat.ts). Errors are told in
 * Anthropic's shape, which its SDK reads.
 */
export const MESSAGES: InboundApi = {
  endpoint: "messages",
  check: checkMessages,
  streams: (body) => body.stream === true,
  maxOutputTokens: (body) => body.max_tokens as number,
  nativeBody: renamed,
  meter: (_body, stream) => (stream ? anthropicSseUsageMeter() : jsonUsageMeter(tokensFromAnthropicUsage)),
  viaChat: {
    toChat: messagesToChatRequest,
    fromChatJson: (answer, body) => chatToMessagesResponse(answer, String(body.model)),
    fromChatStream: (body) => new ChatToMessagesStream(String(body.model)),
  },
  errorBody: anthropicErrorBody,
  streamError: (error) => typedFrame(anthropicErrorBody(error)),
};

/**
 * `POST /v1/messages/count_tokens`: answered by Anthropic for its deployments; for any other, estimated here from
 * the request's bytes (four bytes a token, the reservation's rule), and the answer says so in a header.
 */
export const MESSAGES_COUNT_TOKENS: InboundApi = {
  endpoint: "messages.count_tokens",
  free: true,
  check: (body) => checkMessages(body, false),
  streams: () => false,
  maxOutputTokens: () => 0,
  nativeBody: renamed,
  meter: () => jsonUsageMeter(() => undefined),
  estimate(body) {
    const counted = JSON.stringify([body.system ?? null, body.messages, body.tools ?? null]);
    return {
      body: { input_tokens: Math.ceil(Buffer.byteLength(counted) / 4) },
      headers: { "gatehouse-token-count": "estimated: the model's provider has no token count; 4 bytes of system, messages and tools a token" },
    };
  },
  errorBody: anthropicErrorBody,
  streamError: (error) => typedFrame(anthropicErrorBody(error)),
};

function checkMessages(body: Record<string, unknown>, needsMaxTokens = true): void {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0)
    throw new BadRequestError("'messages' is required and must be a non-empty array", { code: "invalid_type", param: "messages" });
  messages.forEach((m: { role?: unknown; content?: unknown } | null, i) => {
    if (m === null || typeof m !== "object" || Array.isArray(m)) throw new BadRequestError(`messages[${i}] must be an object`, { code: "invalid_type", param: `messages[${i}]` });
    if (m.role !== "user" && m.role !== "assistant")
      throw new BadRequestError(`messages[${i}].role must be "user" or "assistant"`, { code: "invalid_value", param: `messages[${i}].role` });
    if (typeof m.content !== "string" && !Array.isArray(m.content))
      throw new BadRequestError(`messages[${i}].content must be a string or an array of blocks`, { code: "invalid_type", param: `messages[${i}].content` });
  });
  if (needsMaxTokens) {
    const max = body.max_tokens;
    if (typeof max !== "number" || !Number.isInteger(max) || max < 1)
      throw new BadRequestError("'max_tokens' is required and must be a positive integer", { code: "invalid_type", param: "max_tokens" });
  }
}

function renamed(body: Record<string, unknown>, deployment: ModelDeployment): { body: Record<string, unknown> } | null {
  return deployment.upstreamModel === body.model ? null : { body: { ...body, model: deployment.upstreamModel } };
}

// Anthropic's error types by status (its API reference); 529 is its own "overloaded".
const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "billing_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  503: "overloaded_error",
  504: "timeout_error",
  529: "overloaded_error",
};

/** `{"type":"error","error":{"type","message"}}`: what Anthropic's SDK reads. */
export function anthropicErrorBody(error: GatewayError): { type: "error"; error: { type: string; message: string } } {
  return { type: "error", error: { type: ERROR_TYPES[error.status] ?? "api_error", message: error.message } };
}
