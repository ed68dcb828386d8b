import { BadRequestError, UpstreamError } from "../../errors/errors.js";
import type { ChatChunk, ChatResponse, ChatUsage } from "./chat-types.js";

/**
 * OpenAI chat completions served by an Anthropic deployment (Messages API): the request going out, the answer
 * and the stream coming back (docs/providers.md). Pure: no I/O, no clock; the provider module does the HTTP.
 *
 * A parameter Anthropic has no equivalent for is refused with a 400 naming it — never dropped without a word —
 * unless the deployment sets `drop_params` (LiteLLM's switch); the names dropped are then reported back.
 */

export interface ChatToMessagesOptions {
  upstreamModel: string;
  /** `max_tokens` is required by Anthropic: used when the client sets neither max_tokens nor max_completion_tokens. */
  defaultMaxTokens: number;
  dropParams: boolean;
}

export interface MessagesRequest {
  body: Record<string, unknown>;
  /** Parameters left out because the deployment drops what Anthropic cannot take (drop_params). */
  dropped: string[];
}

/** Chat parameters that have a place in a Messages request (or none to have: `stream_options`, `model`). */
const HANDLED = new Set([
  "model",
  "messages",
  "max_tokens",
  "max_completion_tokens",
  "stop",
  "temperature",
  "top_p",
  "top_k",
  "stream",
  "stream_options",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "user",
  "metadata",
  "reasoning_effort",
  "thinking",
  "n",
  "response_format",
  // Gateway-only fields (never sent upstream).
  "mock_response",
]);

// LiteLLM's mapping of OpenAI's reasoning_effort onto a thinking budget.
const THINKING_BUDGET: Record<string, number> = { minimal: 1024, low: 1024, medium: 2048, high: 4096 };

export function chatToMessagesRequest(chat: Record<string, unknown>, o: ChatToMessagesOptions): MessagesRequest {
  const dropped: string[] = [];
  const unsupported = (param: string, why: string) => {
    if (o.dropParams) return void dropped.push(param);
    throw new BadRequestError(`'${param}' is not supported by this model's provider (Anthropic): ${why}. Remove it, or set drop_params on the deployment to have it dropped.`, {
      code: "unsupported_parameter",
      param,
    });
  };
  for (const key of Object.keys(chat)) {
    if (HANDLED.has(key)) continue;
    const v = chat[key];
    if (v === null || v === undefined) continue;
    unsupported(key, "it has no equivalent in the Messages API");
  }
  if (chat.n !== undefined && chat.n !== null && chat.n !== 1) unsupported("n", "Anthropic returns one completion per request");
  const format = (chat.response_format as { type?: unknown } | undefined)?.type;
  if (format !== undefined && format !== "text") unsupported("response_format", "structured output is not translated; use a tool instead");

  const { system, messages } = translateMessages(chat.messages as unknown[]);
  const body: Record<string, unknown> = {
    model: o.upstreamModel,
    max_tokens: (chat.max_completion_tokens as number | undefined) ?? (chat.max_tokens as number | undefined) ?? o.defaultMaxTokens,
    messages,
  };
  if (system.length > 0) body.system = system;
  if (chat.stop !== undefined && chat.stop !== null) body.stop_sequences = typeof chat.stop === "string" ? [chat.stop] : chat.stop;
  for (const field of ["temperature", "top_p", "top_k"] as const) if (typeof chat[field] === "number") body[field] = chat[field];
  if (chat.stream === true) body.stream = true;
  if (Array.isArray(chat.tools) && chat.tools.length > 0) body.tools = chat.tools.map(toolOf);
  const choice = toolChoiceOf(chat.tool_choice, chat.parallel_tool_calls);
  if (choice) body.tool_choice = choice;
  if (typeof chat.user === "string") body.metadata = { user_id: chat.user };
  if (chat.thinking !== undefined && chat.thinking !== null) body.thinking = chat.thinking;
  else if (typeof chat.reasoning_effort === "string") {
    const budget = THINKING_BUDGET[chat.reasoning_effort];
    if (budget === undefined)
      throw new BadRequestError(`'reasoning_effort' must be one of ${Object.keys(THINKING_BUDGET).join(", ")}`, { code: "invalid_value", param: "reasoning_effort" });
    body.thinking = { type: "enabled", budget_tokens: budget };
  }
  return { body, dropped };
}

type Block = Record<string, unknown>;
interface AnthropicMessage {
  role: "user" | "assistant";
  content: Block[];
}

/**
 * System and developer messages become the system prompt; tool results become user turns; consecutive turns of
 * one role are merged (Anthropic wants them alternating).
 */
function translateMessages(list: unknown[]): { system: Block[]; messages: AnthropicMessage[] } {
  const system: Block[] = [];
  const messages: AnthropicMessage[] = [];
  const push = (role: "user" | "assistant", blocks: Block[]) => {
    if (blocks.length === 0) return;
    const last = messages.at(-1);
    if (last && last.role === role) last.content.push(...blocks);
    else messages.push({ role, content: blocks });
  };
  list.forEach((raw, i) => {
    const m = raw as { role: string; content?: unknown; tool_calls?: unknown; tool_call_id?: unknown; name?: unknown };
    const at = `messages[${i}]`;
    switch (m.role) {
      case "system":
      case "developer":
        system.push(...textBlocks(m.content, at));
        return;
      case "user":
        push("user", contentBlocks(m.content, at));
        return;
      case "assistant": {
        const blocks = m.content === null || m.content === undefined ? [] : textBlocks(m.content, at);
        if (Array.isArray(m.tool_calls)) {
          m.tool_calls.forEach((call: { id?: unknown; function?: { name?: unknown; arguments?: unknown } }, j) => {
            const where = `${at}.tool_calls[${j}]`;
            if (typeof call?.id !== "string" || typeof call.function?.name !== "string")
              throw new BadRequestError(`${where} needs an id and a function name`, { code: "invalid_type", param: where });
            blocks.push({ type: "tool_use", id: call.id, name: call.function.name, input: parseArguments(call.function.arguments, `${where}.function.arguments`) });
          });
        }
        push("assistant", blocks);
        return;
      }
      case "tool":
      case "function": {
        if (typeof m.tool_call_id !== "string")
          throw new BadRequestError(`${at}.tool_call_id is required for a tool message`, { code: "invalid_type", param: `${at}.tool_call_id` });
        const content = typeof m.content === "string" ? m.content : textBlocks(m.content, at);
        push("user", [{ type: "tool_result", tool_use_id: m.tool_call_id, content }]);
        return;
      }
      default:
        throw new BadRequestError(`${at}.role '${m.role}' is not one of system, developer, user, assistant, tool`, { code: "invalid_value", param: `${at}.role` });
    }
  });
  if (messages.length === 0)
    throw new BadRequestError("Anthropic needs at least one user or assistant message besides the system prompt", { code: "invalid_value", param: "messages" });
  return { system, messages };
}

function textBlocks(content: unknown, at: string): Block[] {
  if (typeof content === "string") return content === "" ? [] : [{ type: "text", text: content }];
  if (!Array.isArray(content)) return [];
  return content.map((part: { type?: unknown; text?: unknown }, j) => {
    if (part?.type !== "text" || typeof part.text !== "string")
      throw new BadRequestError(`${at}.content[${j}] must be a text part here`, { code: "invalid_type", param: `${at}.content[${j}]` });
    return { type: "text", text: part.text };
  });
}

function contentBlocks(content: unknown, at: string): Block[] {
  if (typeof content === "string") return [{ type: "text", text: content }];
  if (!Array.isArray(content)) throw new BadRequestError(`${at}.content must be a string or an array of content parts`, { code: "invalid_type", param: `${at}.content` });
  return content.map((part: { type?: unknown; text?: unknown; image_url?: unknown }, j): Block => {
    const where = `${at}.content[${j}]`;
    if (part?.type === "text" && typeof part.text === "string") return { type: "text", text: part.text };
    if (part?.type === "image_url") {
      const url = typeof part.image_url === "string" ? part.image_url : (part.image_url as { url?: unknown } | undefined)?.url;
      if (typeof url !== "string") throw new BadRequestError(`${where}.image_url.url must be a string`, { code: "invalid_type", param: `${where}.image_url` });
      const data = /^data:([^;,]+);base64,(.*)$/s.exec(url);
      if (data) return { type: "image", source: { type: "base64", media_type: data[1], data: data[2] } };
      if (/^https?:\/\//.test(url)) return { type: "image", source: { type: "url", url } };
      throw new BadRequestError(`${where}.image_url.url must be an https URL or a base64 data URL`, { code: "invalid_value", param: `${where}.image_url` });
    }
    throw new BadRequestError(`${where} has type '${String(part?.type)}', which Anthropic does not take (text and image_url are translated)`, {
      code: "unsupported_content",
      param: where,
    });
  });
}

function parseArguments(args: unknown, at: string): unknown {
  if (args === undefined || args === null || args === "") return {};
  if (typeof args !== "string") throw new BadRequestError(`${at} must be a JSON string`, { code: "invalid_type", param: at });
  try {
    return JSON.parse(args);
  } catch {
    throw new BadRequestError(`${at} is not valid JSON`, { code: "invalid_json", param: at });
  }
}

function toolOf(tool: { type?: unknown; function?: { name?: unknown; description?: unknown; parameters?: unknown } }, i: number): Block {
  if (tool?.type !== "function" || typeof tool.function?.name !== "string")
    throw new BadRequestError(`tools[${i}] must be a function tool with a name`, { code: "invalid_type", param: `tools[${i}]` });
  const out: Block = { name: tool.function.name, input_schema: tool.function.parameters ?? { type: "object", properties: {} } };
  if (typeof tool.function.description === "string") out.description = tool.function.description;
  return out;
}

function toolChoiceOf(choice: unknown, parallel: unknown): Block | undefined {
  let out: Block | undefined;
  if (choice === "auto") out = { type: "auto" };
  else if (choice === "required") out = { type: "any" };
  else if (choice === "none") out = { type: "none" };
  else if (choice && typeof choice === "object") {
    const name = (choice as { function?: { name?: unknown } }).function?.name;
    if (typeof name !== "string") throw new BadRequestError("tool_choice must be auto, required, none or a function by name", { code: "invalid_value", param: "tool_choice" });
    out = { type: "tool", name };
  } else if (choice !== undefined && choice !== null)
    throw new BadRequestError("tool_choice must be auto, required, none or a function by name", { code: "invalid_value", param: "tool_choice" });
  if (parallel === false) out = { ...(out ?? { type: "auto" }), disable_parallel_tool_use: true };
  return out;
}

// ── the answer ──────────────────────────────────────────────────────────────────────────────────────────

interface AnthropicUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
}

const FINISH_REASONS: Record<string, string> = {
  end_turn: "stop",
  stop_sequence: "stop",
  pause_turn: "stop",
  max_tokens: "length",
  tool_use: "tool_calls",
  refusal: "content_filter",
};

export const finishReasonOf = (stop: unknown): string => FINISH_REASONS[String(stop)] ?? "stop";

/**
 * Anthropic's usage in OpenAI's shape. Anthropic counts cached prompt tokens apart from `input_tokens`; OpenAI's
 * `prompt_tokens` includes them, with the cached ones in `prompt_tokens_details` (and the cache writes in
 * `cache_creation_input_tokens`, as LiteLLM reports them), so a charge can price each kind at its own rate.
 */
export function chatUsageOf(u: AnthropicUsage): ChatUsage {
  const read = u.cache_read_input_tokens ?? 0;
  const written = u.cache_creation_input_tokens ?? 0;
  const prompt = (u.input_tokens ?? 0) + read + written;
  const completion = u.output_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: read },
    cache_read_input_tokens: read,
    cache_creation_input_tokens: written,
  };
}

export function messagesToChatResponse(message: Record<string, unknown>, model: string, created: number): ChatResponse {
  const blocks = Array.isArray(message.content) ? (message.content as Block[]) : [];
  let text = "";
  let reasoning = "";
  const toolCalls: NonNullable<ChatResponse["choices"][0]["message"]["tool_calls"]> = [];
  const thinkingBlocks: Block[] = [];
  for (const b of blocks) {
    if (b.type === "text") text += String(b.text ?? "");
    else if (b.type === "tool_use") toolCalls.push({ id: String(b.id), type: "function", function: { name: String(b.name), arguments: JSON.stringify(b.input ?? {}) } });
    else if (b.type === "thinking") {
      reasoning += String(b.thinking ?? "");
      thinkingBlocks.push(b);
    } else if (b.type === "redacted_thinking") thinkingBlocks.push(b);
  }
  const msg: ChatResponse["choices"][0]["message"] = { role: "assistant", content: toolCalls.length > 0 && text === "" ? null : text };
  if (toolCalls.length > 0) msg.tool_calls = toolCalls;
  if (reasoning !== "") msg.reasoning_content = reasoning;
  if (thinkingBlocks.length > 0) msg.thinking_blocks = thinkingBlocks;
  return {
    id: String(message.id ?? ""),
    object: "chat.completion",
    created,
    model,
    choices: [{ index: 0, message: msg, finish_reason: finishReasonOf(message.stop_reason), logprobs: null }],
    usage: chatUsageOf((message.usage ?? {}) as AnthropicUsage),
  };
}

// ── the stream ──────────────────────────────────────────────────────────────────────────────────────────

/**
 * Anthropic's stream events in, OpenAI chat chunks out, one event at a time. Checks the order it relies on (a
 * delta names a block that was started and not stopped; nothing after message_stop) and throws an UpstreamError
 * on anything else, so a broken upstream stream ends in the client's error event instead of a wrong answer.
 */
export class MessagesToChatStream {
  private id = "";
  private started = false;
  private stopped = false;
  private finish: string | null = null;
  private usage: AnthropicUsage = {};
  /** Open content blocks by index: their kind, and for tool calls the OpenAI tool_calls index. */
  private readonly open = new Map<number, { kind: string; tool?: number }>();
  private tools = 0;

  constructor(
    private readonly model: string,
    private readonly created: number,
    /** The client asked for the usage chunk (stream_options.include_usage). */
    private readonly includeUsage: boolean,
  ) {}

  /** The chunks one upstream event becomes (often none). */
  push(event: { type?: unknown; [k: string]: unknown }): ChatChunk[] {
    if (this.stopped) throw broken(`an event ('${String(event.type)}') after message_stop`);
    switch (event.type) {
      case "message_start": {
        if (this.started) throw broken("a second message_start");
        this.started = true;
        const message = (event.message ?? {}) as { id?: unknown; usage?: AnthropicUsage };
        this.id = String(message.id ?? "");
        this.usage = { ...message.usage };
        return [this.chunk({ role: "assistant", content: "" })];
      }
      case "ping":
        return [];
      case "error":
        throw upstreamStreamError(event.error);
    }
    if (!this.started) throw broken(`'${String(event.type)}' before message_start`);
    switch (event.type) {
      case "content_block_start": {
        const index = event.index as number;
        const block = (event.content_block ?? {}) as Block;
        if (this.open.has(index)) throw broken(`content block ${index} started twice`);
        if (block.type === "tool_use") {
          const tool = this.tools++;
          this.open.set(index, { kind: "tool_use", tool });
          return [this.chunk({ tool_calls: [{ index: tool, id: String(block.id), type: "function", function: { name: String(block.name), arguments: "" } }] })];
        }
        this.open.set(index, { kind: String(block.type) });
        if (block.type === "text" && typeof block.text === "string" && block.text !== "") return [this.chunk({ content: block.text })];
        return [];
      }
      case "content_block_delta": {
        const open = this.open.get(event.index as number);
        if (!open) throw broken(`a delta for content block ${String(event.index)}, which is not open`);
        const delta = (event.delta ?? {}) as Block;
        if (delta.type === "text_delta") return [this.chunk({ content: String(delta.text ?? "") })];
        if (delta.type === "input_json_delta") {
          if (open.tool === undefined) throw broken(`input_json_delta in a ${open.kind} block`);
          return [this.chunk({ tool_calls: [{ index: open.tool, function: { arguments: String(delta.partial_json ?? "") } }] })];
        }
        if (delta.type === "thinking_delta") return [this.chunk({ reasoning_content: String(delta.thinking ?? "") })];
        return []; // signature_delta, citations: nothing in OpenAI's shape carries them
      }
      case "content_block_stop": {
        if (!this.open.delete(event.index as number)) throw broken(`content block ${String(event.index)} stopped but not open`);
        return [];
      }
      case "message_delta": {
        const delta = (event.delta ?? {}) as { stop_reason?: unknown };
        if (delta.stop_reason !== undefined && delta.stop_reason !== null) this.finish = finishReasonOf(delta.stop_reason);
        // message_delta's usage is cumulative: it replaces what message_start said (output_tokens above all).
        const u = event.usage as AnthropicUsage | undefined;
        if (u) this.usage = { ...this.usage, ...definedOnly(u) };
        return [];
      }
      case "message_stop": {
        this.stopped = true;
        const out = [this.chunk({}, this.finish ?? "stop")];
        if (this.includeUsage) out.push({ id: this.id, object: "chat.completion.chunk", created: this.created, model: this.model, choices: [], usage: chatUsageOf(this.usage) });
        return out;
      }
      default:
        return []; // event types added later are skipped, as Anthropic's versioning policy asks of clients
    }
  }

  /** The upstream ended: a stream cut before message_stop is an error, not a short answer. */
  end(): void {
    if (!this.stopped) throw broken("the stream ended before message_stop");
  }

  /** The usage reported so far (complete once the stream ended), in OpenAI's shape. */
  get chatUsage(): ChatUsage | undefined {
    return this.started ? chatUsageOf(this.usage) : undefined;
  }

  private chunk(delta: Record<string, unknown>, finish: string | null = null): ChatChunk {
    return { id: this.id, object: "chat.completion.chunk", created: this.created, model: this.model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] };
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null) (out as Record<string, unknown>)[k] = v;
  return out;
}

const broken = (what: string) => new UpstreamError(`the upstream stream broke its protocol: ${what}`, { code: "upstream_stream_invalid" });

/**
 * An error Anthropic reports in-band (or as a status): overloaded (529) is told as a retryable 503, a rate limit as
 * a 429, anything else as a 502 with Anthropic's type in the code (docs/providers.md).
 */
export function upstreamStreamError(error: unknown): UpstreamError {
  const e = (error ?? {}) as { type?: unknown; message?: unknown };
  const type = typeof e.type === "string" ? e.type : "api_error";
  const message = typeof e.message === "string" ? e.message.slice(0, 2_000) : "the upstream provider reported an error";
  if (type === "overloaded_error") return new UpstreamError(`the upstream provider is overloaded: ${message}`, { code: "upstream_overloaded", headers: { "retry-after": "1" } });
  if (type === "rate_limit_error") return new UpstreamError(message, { code: "upstream_rate_limited" });
  return new UpstreamError(`the upstream provider reported ${type}: ${message}`, {
    relayed: "upstream_<Anthropic error type>",
    status: 502,
    type: "upstream_error",
    code: `upstream_${type}`,
  });
}
