import { BadRequestError, UpstreamError } from "../../errors/errors.js";
import { typedFrame } from "../sse.js";
import type { ChatChunk, ChatResponse, ChatUsage } from "./chat-types.js";

/**
 * Anthropic's Messages API served by a deployment that speaks chat completions (OpenAI, Azure, any
 * OpenAI-compatible server, the mock): the request translated into chat, the answer and the stream translated
 * back, so Claude Code and the Anthropic SDK work against any model a key may use (docs/providers.md). Pure.
 *
 * What has no place in chat is refused with a 400 naming it (server tools, documents), except the thinking blocks of
 * earlier turns, which a model of another provider could not read: they are left out, as documented.
 */

type Block = { type?: unknown; [k: string]: unknown };

export function messagesToChatRequest(body: Record<string, unknown>): Record<string, unknown> {
  const messages: Array<Record<string, unknown>> = [];
  const system = systemText(body.system);
  if (system !== "") messages.push({ role: "system", content: system });
  (body.messages as unknown[]).forEach((raw, i) => {
    const m = raw as { role?: unknown; content?: unknown };
    const at = `messages[${i}]`;
    if (m.role === "user") messages.push(...userTurn(m.content, at));
    else if (m.role === "assistant") messages.push(assistantTurn(m.content, at));
    else throw new BadRequestError(`${at}.role must be "user" or "assistant"`, { code: "invalid_value", param: `${at}.role` });
  });
  const chat: Record<string, unknown> = { model: body.model, messages, max_tokens: body.max_tokens };
  if (Array.isArray(body.stop_sequences) && body.stop_sequences.length > 0) chat.stop = body.stop_sequences;
  for (const field of ["temperature", "top_p", "top_k"] as const) if (typeof body[field] === "number") chat[field] = body[field];
  if (body.stream === true) chat.stream = true;
  if (Array.isArray(body.tools) && body.tools.length > 0) chat.tools = body.tools.map(chatToolOf);
  const choice = body.tool_choice as { type?: unknown; name?: unknown; disable_parallel_tool_use?: unknown } | undefined;
  if (choice && typeof choice === "object") {
    if (choice.type === "auto") chat.tool_choice = "auto";
    else if (choice.type === "any") chat.tool_choice = "required";
    else if (choice.type === "none") chat.tool_choice = "none";
    else if (choice.type === "tool" && typeof choice.name === "string") chat.tool_choice = { type: "function", function: { name: choice.name } };
    else throw new BadRequestError("tool_choice.type must be auto, any, tool (with a name) or none", { code: "invalid_value", param: "tool_choice" });
    if (choice.disable_parallel_tool_use === true) chat.parallel_tool_calls = false;
  }
  const user = (body.metadata as { user_id?: unknown } | undefined)?.user_id;
  if (typeof user === "string") chat.user = user;
  const thinking = body.thinking as { type?: unknown; budget_tokens?: unknown } | undefined;
  if (thinking?.type === "enabled") {
    // LiteLLM's mapping the other way round: a thinking budget becomes a reasoning effort.
    const budget = typeof thinking.budget_tokens === "number" ? thinking.budget_tokens : 0;
    chat.reasoning_effort = budget >= 4096 ? "high" : budget >= 2048 ? "medium" : "low";
  }
  return chat;
}

function systemText(system: unknown): string {
  if (system === undefined || system === null) return "";
  if (typeof system === "string") return system;
  if (!Array.isArray(system)) throw new BadRequestError("'system' must be a string or an array of text blocks", { code: "invalid_type", param: "system" });
  return system
    .map((b: Block, i) => {
      if (b?.type !== "text" || typeof b.text !== "string") throw new BadRequestError(`system[${i}] must be a text block`, { code: "invalid_type", param: `system[${i}]` });
      return b.text;
    })
    .join("\n\n");
}

/** A user turn: its tool results become tool messages (which must follow the assistant's calls), the rest one user message. */
function userTurn(content: unknown, at: string): Array<Record<string, unknown>> {
  if (typeof content === "string") return [{ role: "user", content }];
  if (!Array.isArray(content)) throw new BadRequestError(`${at}.content must be a string or an array of blocks`, { code: "invalid_type", param: `${at}.content` });
  const out: Array<Record<string, unknown>> = [];
  const parts: Array<Record<string, unknown>> = [];
  content.forEach((b: Block, j) => {
    const where = `${at}.content[${j}]`;
    if (b?.type === "text" && typeof b.text === "string") parts.push({ type: "text", text: b.text });
    else if (b?.type === "image") parts.push({ type: "image_url", image_url: { url: imageUrlOf(b.source, where) } });
    else if (b?.type === "tool_result") {
      if (typeof b.tool_use_id !== "string") throw new BadRequestError(`${where}.tool_use_id is required`, { code: "invalid_type", param: `${where}.tool_use_id` });
      const text =
        typeof b.content === "string" ? b.content : Array.isArray(b.content) ? b.content.map((c: Block) => (c?.type === "text" ? String(c.text ?? "") : "")).join("") : "";
      out.push({ role: "tool", tool_call_id: b.tool_use_id, content: b.is_error === true ? `Error: ${text}` : text });
    } else throw new BadRequestError(`${where} has type '${String(b?.type)}', which a non-Anthropic model cannot take`, { code: "unsupported_content", param: where });
  });
  if (parts.length > 0) out.push({ role: "user", content: parts.length === 1 && parts[0]!.type === "text" ? parts[0]!.text : parts });
  return out;
}

function imageUrlOf(source: unknown, where: string): string {
  const s = (source ?? {}) as { type?: unknown; media_type?: unknown; data?: unknown; url?: unknown };
  if (s.type === "base64" && typeof s.media_type === "string" && typeof s.data === "string") return `data:${s.media_type};base64,${s.data}`;
  if (s.type === "url" && typeof s.url === "string") return s.url;
  throw new BadRequestError(`${where}.source must be a base64 or url image source`, { code: "invalid_value", param: `${where}.source` });
}

function assistantTurn(content: unknown, at: string): Record<string, unknown> {
  if (typeof content === "string") return { role: "assistant", content };
  if (!Array.isArray(content)) throw new BadRequestError(`${at}.content must be a string or an array of blocks`, { code: "invalid_type", param: `${at}.content` });
  let text = "";
  const toolCalls: Array<Record<string, unknown>> = [];
  content.forEach((b: Block, j) => {
    const where = `${at}.content[${j}]`;
    if (b?.type === "text") text += String(b.text ?? "");
    else if (b?.type === "tool_use") {
      if (typeof b.id !== "string" || typeof b.name !== "string") throw new BadRequestError(`${where} needs an id and a name`, { code: "invalid_type", param: where });
      toolCalls.push({ id: b.id, type: "function", function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
    } else if (b?.type === "thinking" || b?.type === "redacted_thinking") {
      // Another provider's model cannot read them (docs/providers.md).
    } else throw new BadRequestError(`${where} has type '${String(b?.type)}', which a non-Anthropic model cannot take`, { code: "unsupported_content", param: where });
  });
  const turn: Record<string, unknown> = { role: "assistant", content: text === "" && toolCalls.length > 0 ? null : text };
  if (toolCalls.length > 0) turn.tool_calls = toolCalls;
  return turn;
}

function chatToolOf(tool: Block, i: number): Record<string, unknown> {
  // Anthropic's server tools (web search, code execution, …) carry a versioned type: only Anthropic runs them.
  if (tool?.type !== undefined && tool.type !== "custom")
    throw new BadRequestError(`tools[${i}] is a server tool ('${String(tool.type)}'), which only Anthropic runs`, { code: "unsupported_tool", param: `tools[${i}]` });
  if (typeof tool?.name !== "string") throw new BadRequestError(`tools[${i}].name is required`, { code: "invalid_type", param: `tools[${i}].name` });
  const fn: Record<string, unknown> = { name: tool.name, parameters: tool.input_schema ?? { type: "object", properties: {} } };
  if (typeof tool.description === "string") fn.description = tool.description;
  return { type: "function", function: fn };
}

// ── the answer ──────────────────────────────────────────────────────────────────────────────────────────

const STOP_REASONS: Record<string, string> = { stop: "end_turn", length: "max_tokens", tool_calls: "tool_use", function_call: "tool_use", content_filter: "refusal" };
const stopReasonOf = (finish: unknown) => STOP_REASONS[String(finish)] ?? "end_turn";

/** OpenAI's usage in Anthropic's shape: cached prompt tokens apart from `input_tokens`, as Anthropic counts them. */
export function anthropicUsageOf(u: ChatUsage | null | undefined): Record<string, number> {
  const read = u?.cache_read_input_tokens ?? u?.prompt_tokens_details?.cached_tokens ?? 0;
  const written = u?.cache_creation_input_tokens ?? 0;
  return {
    input_tokens: Math.max(0, (u?.prompt_tokens ?? 0) - read - written),
    output_tokens: u?.completion_tokens ?? 0,
    cache_creation_input_tokens: written,
    cache_read_input_tokens: read,
  };
}

export function chatToMessagesResponse(answer: ChatResponse, model: string): Record<string, unknown> {
  const choice = answer.choices?.[0];
  if (!choice) throw new UpstreamError("the upstream answer has no choices", { code: "upstream_bad_response" });
  const message = choice.message ?? { role: "assistant", content: null };
  const content: Block[] = [];
  if (typeof message.reasoning_content === "string" && message.reasoning_content !== "") content.push({ type: "thinking", thinking: message.reasoning_content, signature: "" });
  if (typeof message.content === "string" && message.content !== "") content.push({ type: "text", text: message.content });
  for (const call of message.tool_calls ?? []) content.push({ type: "tool_use", id: call.id, name: call.function.name, input: parseToolInput(call.function.arguments) });
  return {
    id: messageIdOf(answer.id),
    type: "message",
    role: "assistant",
    model,
    content,
    stop_reason: stopReasonOf(choice.finish_reason),
    stop_sequence: null,
    usage: anthropicUsageOf(answer.usage),
  };
}

function parseToolInput(args: string): unknown {
  if (args === "") return {};
  try {
    const input = JSON.parse(args);
    if (input !== null && typeof input === "object" && !Array.isArray(input)) return input;
  } catch {}
  throw new UpstreamError("the model's tool call arguments are not a JSON object", { code: "upstream_bad_tool_call" });
}

const messageIdOf = (id: unknown) => `msg_${String(id ?? "").replace(/^chatcmpl-?/, "") || Date.now().toString(36)}`;

// ── the stream ──────────────────────────────────────────────────────────────────────────────────────────

/**
 * OpenAI chat chunks in, Anthropic's events out: `message_start`, then content blocks one after the other (thinking,
 * text, each tool call; started, deltas, stopped), `message_delta` with the stop reason and the usage, and
 * `message_stop`. Blocks never overlap and every delta names the open block: the order Anthropic's SDK and Claude
 * Code rely on (an earlier translation elsewhere sent a thinking delta into a text block).
 */
export class ChatToMessagesStream {
  private started = false;
  private index = -1;
  private open: { kind: "text" | "thinking" | "tool_use"; tool?: number } | null = null;
  private finish: string | null = null;
  private usage: ChatUsage | null = null;
  private readonly toolBlocks = new Map<number, number>();

  constructor(private readonly model: string) {}

  push(chunk: ChatChunk): string {
    let out = this.started ? "" : this.start(chunk);
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices?.[0];
    if (!choice) return out;
    const delta = choice.delta ?? {};
    if (typeof delta.reasoning_content === "string" && delta.reasoning_content !== "") {
      if (this.open?.kind !== "thinking") out += this.openBlock("thinking", { type: "thinking", thinking: "" });
      out += this.delta({ type: "thinking_delta", thinking: delta.reasoning_content });
    }
    if (typeof delta.content === "string" && delta.content !== "") {
      if (this.open?.kind !== "text") out += this.openBlock("text", { type: "text", text: "" });
      out += this.delta({ type: "text_delta", text: delta.content });
    }
    for (const call of delta.tool_calls ?? []) {
      if (call.id !== undefined) {
        if (this.toolBlocks.has(call.index)) throw broken(`tool call ${call.index} started twice`);
        out += this.openBlock("tool_use", { type: "tool_use", id: call.id, name: call.function?.name ?? "", input: {} }, call.index);
        this.toolBlocks.set(call.index, this.index);
      }
      const args = call.function?.arguments;
      if (args !== undefined && args !== "") {
        if (this.open?.kind !== "tool_use" || this.open.tool !== call.index) throw broken(`arguments for tool call ${call.index}, which is not the one being streamed`);
        out += this.delta({ type: "input_json_delta", partial_json: args });
      }
    }
    if (choice.finish_reason) this.finish = choice.finish_reason;
    return out;
  }

  end(): string {
    if (!this.started || this.finish === null) throw broken("the stream ended before its finish_reason");
    let out = this.closeBlock();
    const usage = anthropicUsageOf(this.usage);
    out += typedFrame({ type: "message_delta", delta: { stop_reason: stopReasonOf(this.finish), stop_sequence: null }, usage });
    out += typedFrame({ type: "message_stop" });
    return out;
  }

  private start(chunk: ChatChunk): string {
    this.started = true;
    const message = {
      id: messageIdOf(chunk.id),
      type: "message",
      role: "assistant",
      model: this.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    };
    return typedFrame({ type: "message_start", message }) + typedFrame({ type: "ping" });
  }

  private openBlock(kind: "text" | "thinking" | "tool_use", block: Record<string, unknown>, tool?: number): string {
    const out = this.closeBlock();
    this.index++;
    this.open = { kind, tool };
    return out + typedFrame({ type: "content_block_start", index: this.index, content_block: block });
  }

  private closeBlock(): string {
    if (this.open === null) return "";
    this.open = null;
    return typedFrame({ type: "content_block_stop", index: this.index });
  }

  private delta(delta: Record<string, unknown>): string {
    return typedFrame({ type: "content_block_delta", index: this.index, delta });
  }
}

const broken = (what: string) => new UpstreamError(`the upstream stream broke its protocol: ${what}`, { code: "upstream_stream_invalid" });
