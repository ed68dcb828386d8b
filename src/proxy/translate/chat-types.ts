/**
 * OpenAI chat completions, the shape every translation meets in (docs/providers.md): an inbound API other than
 * chat is turned into a chat request, a provider other than OpenAI's turns a chat request into its own; answers
 * and streams come back the same way. Only what the translations read or write is typed; the rest passes through.
 */

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number };
  completion_tokens_details?: { reasoning_tokens?: number };
  /** Prompt tokens read from the provider's prompt cache (LiteLLM's field; Anthropic's own name). */
  cache_read_input_tokens?: number;
  /** Prompt tokens written to the provider's prompt cache (LiteLLM's field; Anthropic's own name). */
  cache_creation_input_tokens?: number;
}

export interface ChatToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: "assistant";
  content: string | null;
  tool_calls?: ChatToolCall[];
  /** The model's reasoning, where the provider reports it (LiteLLM's field). */
  reasoning_content?: string;
  /** Anthropic's thinking blocks, signatures included, to send back on the next turn (LiteLLM's field). */
  thinking_blocks?: Array<Record<string, unknown>>;
  refusal?: string | null;
}

export interface ChatResponse {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{ index: number; message: ChatMessage; finish_reason: string | null; logprobs: null }>;
  usage?: ChatUsage;
}

export interface ChatChunkDelta {
  role?: "assistant";
  content?: string | null;
  reasoning_content?: string;
  tool_calls?: Array<{ index: number; id?: string; type?: "function"; function?: { name?: string; arguments?: string } }>;
  refusal?: string | null;
}

export interface ChatChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{ index: number; delta: ChatChunkDelta; finish_reason: string | null; logprobs?: null }>;
  usage?: ChatUsage | null;
}
