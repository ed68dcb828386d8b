import { randomBytes } from "node:crypto";
import { BadRequestError, UpstreamError } from "../../errors/errors.js";
import { typedFrame } from "../sse.js";
import type { ChatChunk, ChatResponse, ChatUsage } from "./chat-types.js";

/**
 * OpenAI's Responses API served by a deployment that speaks chat completions (Anthropic, Azure, any OpenAI-compatible
 * server other than OpenAI's own, the mock): the request translated into chat, the answer and the stream translated
 * back — text, function calls and reasoning (docs/providers.md). Pure but for the ids it makes up.
 *
 * Nothing is stored: `previous_response_id` (which needs a stored response) is refused with a 400 that says so,
 * and every answer says `"store": false`. What has no place in chat — built-in tools, file inputs, item references —
 * is refused with a 400 naming it.
 */

type Item = { type?: unknown; role?: unknown; [k: string]: unknown };

export function responsesToChatRequest(body: Record<string, unknown>): Record<string, unknown> {
  if (body.previous_response_id !== undefined && body.previous_response_id !== null) {
    throw new BadRequestError(
      "'previous_response_id' needs a stored response, and this model's answers are not stored (its provider does not speak the Responses API): send the conversation in 'input' instead",
      { code: "unsupported_parameter", param: "previous_response_id" },
    );
  }
  const messages: Array<Record<string, unknown>> = [];
  if (typeof body.instructions === "string" && body.instructions !== "") messages.push({ role: "system", content: body.instructions });
  const input = body.input;
  if (typeof input === "string") messages.push({ role: "user", content: input });
  else
    (input as Item[]).forEach((item, i) => {
      addItem(messages, item, `input[${i}]`);
    });

  const chat: Record<string, unknown> = { model: body.model, messages };
  if (typeof body.max_output_tokens === "number") chat.max_tokens = body.max_output_tokens;
  for (const field of ["temperature", "top_p", "parallel_tool_calls", "user"] as const) if (body[field] !== undefined && body[field] !== null) chat[field] = body[field];
  if (body.stream === true) chat.stream = true;
  if (Array.isArray(body.tools) && body.tools.length > 0) chat.tools = body.tools.map(chatToolOf);
  const choice = body.tool_choice;
  if (choice === "auto" || choice === "none" || choice === "required") chat.tool_choice = choice;
  else if (choice && typeof choice === "object") {
    const c = choice as { type?: unknown; name?: unknown };
    if (c.type !== "function" || typeof c.name !== "string")
      throw new BadRequestError("tool_choice must be auto, none, required or a function by name", { code: "invalid_value", param: "tool_choice" });
    chat.tool_choice = { type: "function", function: { name: c.name } };
  }
  const format = (body.text as { format?: { type?: unknown; name?: unknown; schema?: unknown; strict?: unknown; description?: unknown } } | undefined)?.format;
  if (format?.type === "json_schema") {
    chat.response_format = {
      type: "json_schema",
      json_schema: { name: format.name ?? "response", schema: format.schema, strict: format.strict ?? undefined, description: format.description },
    };
  } else if (format?.type === "json_object") chat.response_format = { type: "json_object" };
  const effort = (body.reasoning as { effort?: unknown } | undefined)?.effort;
  if (typeof effort === "string") chat.reasoning_effort = effort;
  return chat;
}

function addItem(messages: Array<Record<string, unknown>>, item: Item, at: string): void {
  if (item === null || typeof item !== "object") throw new BadRequestError(`${at} must be an object`, { code: "invalid_type", param: at });
  const type = item.type ?? (item.role !== undefined ? "message" : undefined);
  if (type === "message") {
    const role = item.role;
    if (role !== "user" && role !== "assistant" && role !== "system" && role !== "developer")
      throw new BadRequestError(`${at}.role must be user, assistant, system or developer`, { code: "invalid_value", param: `${at}.role` });
    messages.push({ role: role === "developer" ? "system" : role, content: contentOf(item.content, at, role === "assistant") });
    return;
  }
  if (type === "function_call") {
    if (typeof item.call_id !== "string" || typeof item.name !== "string") throw new BadRequestError(`${at} needs a call_id and a name`, { code: "invalid_type", param: at });
    const call = { id: item.call_id, type: "function", function: { name: item.name, arguments: typeof item.arguments === "string" ? item.arguments : "{}" } };
    const last = messages.at(-1);
    // Consecutive calls are one assistant turn in chat.
    if (last?.role === "assistant" && Array.isArray(last.tool_calls)) (last.tool_calls as unknown[]).push(call);
    else messages.push({ role: "assistant", content: null, tool_calls: [call] });
    return;
  }
  if (type === "function_call_output") {
    if (typeof item.call_id !== "string") throw new BadRequestError(`${at}.call_id is required`, { code: "invalid_type", param: `${at}.call_id` });
    messages.push({ role: "tool", tool_call_id: item.call_id, content: typeof item.output === "string" ? item.output : JSON.stringify(item.output ?? "") });
    return;
  }
  // Reasoning items of earlier turns: a chat model takes none (docs/providers.md).
  if (type === "reasoning") return;
  throw new BadRequestError(`${at} has type '${String(type)}', which this model's provider cannot take (it does not speak the Responses API)`, {
    code: "unsupported_input",
    param: at,
  });
}

function contentOf(content: unknown, at: string, assistant: boolean): unknown {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw new BadRequestError(`${at}.content must be a string or an array of parts`, { code: "invalid_type", param: `${at}.content` });
  const parts = content.map((p: Item, j) => {
    const where = `${at}.content[${j}]`;
    if ((p?.type === "input_text" || p?.type === "output_text" || p?.type === "text") && typeof p.text === "string") return { type: "text", text: p.text };
    if (p?.type === "refusal" && typeof p.refusal === "string") return { type: "text", text: p.refusal };
    if (p?.type === "input_image" && typeof p.image_url === "string") return { type: "image_url", image_url: { url: p.image_url, detail: p.detail ?? "auto" } };
    throw new BadRequestError(`${where} has type '${String(p?.type)}', which this model's provider cannot take`, { code: "unsupported_content", param: where });
  });
  // An assistant turn's content is text in chat.
  if (assistant) return parts.map((p) => (p.type === "text" ? p.text : "")).join("");
  return parts;
}

function chatToolOf(tool: Item, i: number): Record<string, unknown> {
  if (tool?.type !== "function")
    throw new BadRequestError(`tools[${i}] is a built-in tool ('${String(tool?.type)}'), which only OpenAI's own API runs`, { code: "unsupported_tool", param: `tools[${i}]` });
  if (typeof tool.name !== "string") throw new BadRequestError(`tools[${i}].name is required`, { code: "invalid_type", param: `tools[${i}].name` });
  const fn: Record<string, unknown> = { name: tool.name, parameters: tool.parameters ?? { type: "object", properties: {} } };
  if (typeof tool.description === "string") fn.description = tool.description;
  if (typeof tool.strict === "boolean") fn.strict = tool.strict;
  return { type: "function", function: fn };
}

// ── the answer ──────────────────────────────────────────────────────────────────────────────────────────

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

export function responsesUsageOf(u: ChatUsage | null | undefined): Record<string, unknown> {
  const input = u?.prompt_tokens ?? 0;
  const output = u?.completion_tokens ?? 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: u?.cache_read_input_tokens ?? u?.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: u?.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: input + output,
  };
}

/** The fields every response object carries, from the request (what the SDKs read back). */
function envelope(body: Record<string, unknown>, id: string, createdAt: number, model: string) {
  return {
    id,
    object: "response",
    created_at: createdAt,
    model,
    instructions: typeof body.instructions === "string" ? body.instructions : null,
    max_output_tokens: body.max_output_tokens ?? null,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: null,
    reasoning: { effort: (body.reasoning as { effort?: unknown } | undefined)?.effort ?? null, summary: null },
    store: false,
    temperature: body.temperature ?? 1,
    text: body.text ?? { format: { type: "text" } },
    tool_choice: body.tool_choice ?? "auto",
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    truncation: "disabled",
    user: body.user ?? null,
    metadata: body.metadata ?? {},
    error: null,
  };
}

export function chatToResponsesResponse(answer: ChatResponse, body: Record<string, unknown>, createdAt = Math.floor(Date.now() / 1000)): Record<string, unknown> {
  const choice = answer.choices?.[0];
  if (!choice) throw new UpstreamError("the upstream answer has no choices", { code: "upstream_bad_response" });
  const message = choice.message ?? { role: "assistant", content: null };
  const output: Array<Record<string, unknown>> = [];
  if (typeof message.reasoning_content === "string" && message.reasoning_content !== "") {
    output.push({ type: "reasoning", id: newId("rs"), summary: [{ type: "summary_text", text: message.reasoning_content }] });
  }
  if (typeof message.content === "string" && message.content !== "") {
    output.push({ type: "message", id: newId("msg"), status: "completed", role: "assistant", content: [{ type: "output_text", text: message.content, annotations: [] }] });
  }
  for (const call of message.tool_calls ?? []) {
    output.push({ type: "function_call", id: newId("fc"), call_id: call.id, name: call.function.name, arguments: call.function.arguments, status: "completed" });
  }
  const incomplete = choice.finish_reason === "length" || choice.finish_reason === "content_filter";
  return {
    ...envelope(body, newId("resp"), createdAt, String(body.model)),
    status: incomplete ? "incomplete" : "completed",
    incomplete_details: incomplete ? { reason: choice.finish_reason === "length" ? "max_output_tokens" : "content_filter" } : null,
    output,
    usage: responsesUsageOf(answer.usage),
  };
}

// ── the stream ──────────────────────────────────────────────────────────────────────────────────────────

interface OpenItem {
  kind: "reasoning" | "message" | "function_call";
  outputIndex: number;
  item: Record<string, unknown>;
  text: string;
  /** The chat stream's tool call index (function calls). */
  tool?: number;
}

/**
 * OpenAI chat chunks in, Responses API events out: `response.created` and `response.in_progress`, then each output
 * item in turn (reasoning summary, message text, function calls — added, its deltas, done), then
 * `response.completed` (or `response.incomplete`) with the whole response and its usage. Every event carries its
 * `sequence_number`; items never overlap.
 */
export class ChatToResponsesStream {
  private readonly id = newId("resp");
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private sequence = 0;
  private started = false;
  private open: OpenItem | null = null;
  private readonly done: Array<Record<string, unknown>> = [];
  private finish: string | null = null;
  private usage: ChatUsage | null = null;
  private readonly calls = new Set<number>();

  constructor(private readonly body: Record<string, unknown>) {}

  push(chunk: ChatChunk): string {
    let out = "";
    if (!this.started) {
      this.started = true;
      const response = this.response("in_progress", []);
      out += this.event("response.created", { response }) + this.event("response.in_progress", { response });
    }
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices?.[0];
    if (!choice) return out;
    const delta = choice.delta ?? {};
    if (typeof delta.reasoning_content === "string" && delta.reasoning_content !== "") {
      if (this.open?.kind !== "reasoning") out += this.openItem("reasoning", { type: "reasoning", id: newId("rs"), summary: [] });
      out += this.appendText(delta.reasoning_content);
    }
    if (typeof delta.content === "string" && delta.content !== "") {
      if (this.open?.kind !== "message") out += this.openItem("message", { type: "message", id: newId("msg"), status: "in_progress", role: "assistant", content: [] });
      out += this.appendText(delta.content);
    }
    for (const call of delta.tool_calls ?? []) {
      if (call.id !== undefined) {
        if (this.calls.has(call.index)) throw broken(`tool call ${call.index} started twice`);
        this.calls.add(call.index);
        out += this.openItem(
          "function_call",
          { type: "function_call", id: newId("fc"), call_id: call.id, name: call.function?.name ?? "", arguments: "", status: "in_progress" },
          call.index,
        );
      }
      const args = call.function?.arguments;
      if (args !== undefined && args !== "") {
        if (this.open?.kind !== "function_call" || this.open.tool !== call.index) throw broken(`arguments for tool call ${call.index}, which is not the one being streamed`);
        out += this.appendText(args);
      }
    }
    if (choice.finish_reason) this.finish = choice.finish_reason;
    return out;
  }

  end(): string {
    if (!this.started || this.finish === null) throw broken("the stream ended before its finish_reason");
    let out = this.closeItem();
    const incomplete = this.finish === "length" || this.finish === "content_filter";
    const response = {
      ...this.response(incomplete ? "incomplete" : "completed", this.done),
      incomplete_details: incomplete ? { reason: this.finish === "length" ? "max_output_tokens" : "content_filter" } : null,
      usage: responsesUsageOf(this.usage),
    };
    out += this.event(incomplete ? "response.incomplete" : "response.completed", { response });
    return out;
  }

  private response(status: string, output: Array<Record<string, unknown>>) {
    return { ...envelope(this.body, this.id, this.createdAt, String(this.body.model)), status, incomplete_details: null, output, usage: null };
  }

  private event(type: string, fields: Record<string, unknown>): string {
    return typedFrame({ type, sequence_number: this.sequence++, ...fields });
  }

  private openItem(kind: OpenItem["kind"], item: Record<string, unknown>, tool?: number): string {
    let out = this.closeItem();
    const outputIndex = this.done.length;
    this.open = { kind, outputIndex, item, text: "", tool };
    out += this.event("response.output_item.added", { output_index: outputIndex, item });
    const at = { item_id: item.id, output_index: outputIndex };
    if (kind === "message") out += this.event("response.content_part.added", { ...at, content_index: 0, part: { type: "output_text", text: "", annotations: [] } });
    if (kind === "reasoning") out += this.event("response.reasoning_summary_part.added", { ...at, summary_index: 0, part: { type: "summary_text", text: "" } });
    return out;
  }

  private appendText(delta: string): string {
    const open = this.open!;
    open.text += delta;
    const at = { item_id: open.item.id, output_index: open.outputIndex };
    if (open.kind === "message") return this.event("response.output_text.delta", { ...at, content_index: 0, delta, logprobs: [] });
    if (open.kind === "reasoning") return this.event("response.reasoning_summary_text.delta", { ...at, summary_index: 0, delta });
    return this.event("response.function_call_arguments.delta", { ...at, delta });
  }

  private closeItem(): string {
    const open = this.open;
    if (open === null) return "";
    this.open = null;
    const at = { item_id: open.item.id, output_index: open.outputIndex };
    let out = "";
    let item: Record<string, unknown>;
    if (open.kind === "message") {
      const part = { type: "output_text", text: open.text, annotations: [] };
      out += this.event("response.output_text.done", { ...at, content_index: 0, text: open.text, logprobs: [] });
      out += this.event("response.content_part.done", { ...at, content_index: 0, part });
      item = { ...open.item, status: "completed", content: [part] };
    } else if (open.kind === "reasoning") {
      const part = { type: "summary_text", text: open.text };
      out += this.event("response.reasoning_summary_text.done", { ...at, summary_index: 0, text: open.text });
      out += this.event("response.reasoning_summary_part.done", { ...at, summary_index: 0, part });
      item = { ...open.item, summary: [part] };
    } else {
      out += this.event("response.function_call_arguments.done", { ...at, arguments: open.text });
      item = { ...open.item, arguments: open.text, status: "completed" };
    }
    this.done.push(item);
    return out + this.event("response.output_item.done", { output_index: open.outputIndex, item });
  }
}

const broken = (what: string) => new UpstreamError(`the upstream stream broke its protocol: ${what}`, { code: "upstream_stream_invalid" });
