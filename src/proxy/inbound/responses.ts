import { BadRequestError, type GatewayError } from "../../errors/errors.js";
import { tokensFromResponsesUsage } from "../../limits/pricing.js";
import { jsonUsageMeter, responsesSseUsageMeter } from "../../limits/usage-meter.js";
import { typedFrame } from "../sse.js";
import { ChatToResponsesStream, chatToResponsesResponse, responsesToChatRequest } from "../translate/responses-over-chat.js";
import { type InboundApi, openAIErrorBody } from "./inbound-api.js";

/**
 * OpenAI's Responses API (`POST /v1/responses`), which the AI SDK's default `openai(model)`, LangChain's
 * `useResponsesApi` and `openai.responses` call. OpenAI's own API gets it as it came (stored there, as OpenAI
 * stores); every other deployment gets it translated into chat completions, not stored
 * (translate/responses-over-chat.ts).
 */
export const RESPONSES: InboundApi = {
  endpoint: "responses",
  check(body) {
    const input = body.input;
    if (typeof input !== "string" && !Array.isArray(input))
      throw new BadRequestError("'input' is required and must be a string or an array of items", { code: "invalid_type", param: "input" });
    const max = body.max_output_tokens;
    if (max !== undefined && max !== null && (typeof max !== "number" || !Number.isInteger(max) || max < 1))
      throw new BadRequestError("'max_output_tokens' must be a positive integer", { code: "invalid_type", param: "max_output_tokens" });
  },
  streams: (body) => body.stream === true,
  maxOutputTokens: (body) => (typeof body.max_output_tokens === "number" ? body.max_output_tokens : undefined),
  nativeBody: (body, deployment) => (deployment.upstreamModel === body.model ? null : { body: { ...body, model: deployment.upstreamModel } }),
  meter: (_body, stream) => (stream ? responsesSseUsageMeter() : jsonUsageMeter(tokensFromResponsesUsage)),
  viaChat: {
    toChat: responsesToChatRequest,
    fromChatJson: (answer, body) => chatToResponsesResponse(answer, body),
    fromChatStream: (body) => new ChatToResponsesStream(body),
  },
  errorBody: openAIErrorBody,
  // The Responses API's in-stream error event (what its SDKs read as a failed stream).
  streamError: (error: GatewayError) => typedFrame({ type: "error", code: error.code, message: error.message, param: error.param, sequence_number: 0 }),
};
