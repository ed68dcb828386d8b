import type { ModelDeployment } from "../../config/settings.js";
import type { GatewayError } from "../../errors/errors.js";
import type { UsageMeter } from "../../limits/usage-meter.js";
import type { Endpoint } from "../provider.js";
import type { ChatChunk, ChatResponse } from "../translate/chat-types.js";

/**
 * One API shape clients speak to the gateway (OpenAI's chat, completions, embeddings and Responses API,
 * Anthropic's Messages API and its token count): what the relay needs to know of it, and nothing of HTTP
 * (docs/providers.md). A deployment whose provider speaks the shape gets the request as it came (model renamed,
 * usage asked for when it must be charged); any other gets it translated into chat completions and its answer
 * translated back, through `viaChat`.
 */
export interface InboundApi {
  /** What a provider that speaks this shape natively is called with. */
  readonly endpoint: Endpoint;
  /** Costs nothing and counts against no limit (a token count). */
  readonly free?: boolean;
  /** Refuses a request of the wrong shape: a 400 naming the field. */
  check(body: Record<string, unknown>): void;
  /** The client asked for a stream. */
  streams(body: Record<string, unknown>): boolean;
  /** The most output tokens the request may produce (the reservation's worst case), if it says. */
  maxOutputTokens(body: Record<string, unknown>): number | undefined;
  /**
   * The body for a deployment that speaks this shape, or null when the client's bytes can go as they are. `metered`:
   * the answer must report usage (a stream is asked to). `raw`, when given, is the new body's bytes, made from the
   * client's without serializing the whole body again.
   */
  nativeBody(body: Record<string, unknown>, deployment: ModelDeployment, metered: boolean, raw: Buffer): { body: Record<string, unknown>; raw?: Buffer } | null;
  /** Reads usage from a native answer (and, for chat, drops the usage chunk the client did not ask for). */
  meter(body: Record<string, unknown>, stream: boolean): UsageMeter;
  /** Translation through chat completions; absent: only deployments that speak this shape serve it. */
  readonly viaChat?: ViaChat;
  /** Answered here when the deployment does not speak the shape and it has no translation (an estimate, say so). */
  estimate?(body: Record<string, unknown>): { body: unknown; headers: Record<string, string> };
  /** A failure, before the answer began, as this shape's error body. */
  errorBody(error: GatewayError): unknown;
  /** A failure once a stream has begun: the event that tells it, in this shape. */
  streamError(error: GatewayError): string;
}

export interface ViaChat {
  /** The request as chat completions (its model left as the client named it; the relay renames it). */
  toChat(body: Record<string, unknown>): Record<string, unknown>;
  /** A chat answer in this shape. */
  fromChatJson(answer: ChatResponse, body: Record<string, unknown>): unknown;
  /** A chat stream in this shape, chunk by chunk. */
  fromChatStream(body: Record<string, unknown>): ChatStreamTranslator;
}

export interface ChatStreamTranslator {
  /** The frames one chat chunk becomes (often none). */
  push(chunk: ChatChunk): string;
  /** The chat stream ended (`[DONE]`, or upstream closed): the frames that close this shape's stream; throws when cut short. */
  end(): string;
}

/** OpenAI's error body: what every route answered so far, and what OpenAI's SDKs read. */
export function openAIErrorBody(error: GatewayError): unknown {
  return error.toBody();
}
