import type { ChatChunk } from "../../src/proxy/translate/chat-types.js";

/** Streams as upstreams send them, for the translation tests and the stream fuzz test. */

/** Anthropic's events, as its API streams them: text, then a tool call whose input arrives in pieces. */
export const ANTHROPIC_EVENTS: Array<Record<string, unknown>> = [
  {
    type: "message_start",
    message: {
      id: "msg_9",
      type: "message",
      role: "assistant",
      content: [],
      model: "claude-sonnet-4-5",
      usage: { input_tokens: 25, output_tokens: 1, cache_read_input_tokens: 7, cache_creation_input_tokens: 0 },
    },
  },
  { type: "ping" },
  { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "" } },
  { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "Need the weather." } },
  { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "abc" } },
  { type: "content_block_stop", index: 0 },
  { type: "content_block_start", index: 1, content_block: { type: "text", text: "" } },
  { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "Checking " } },
  { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "now — ünïcode." } },
  { type: "content_block_stop", index: 1 },
  { type: "content_block_start", index: 2, content_block: { type: "tool_use", id: "toolu_7", name: "weather", input: {} } },
  { type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: '{"city": ' } },
  { type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: '"Paris"}' } },
  { type: "content_block_stop", index: 2 },
  { type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 42 } },
  { type: "message_stop" },
];

/** What a client reassembles from chat chunks: text, reasoning, tool calls by index, finish reason, usage. */
export function assembleChat(chunks: ChatChunk[]) {
  let content = "";
  let reasoning = "";
  let finish: string | null = null;
  let usage: unknown;
  const tools: Array<{ id?: string; name?: string; arguments: string }> = [];
  for (const c of chunks) {
    if (c.usage) usage = c.usage;
    const choice = c.choices[0];
    if (!choice) continue;
    content += choice.delta.content ?? "";
    reasoning += choice.delta.reasoning_content ?? "";
    for (const t of choice.delta.tool_calls ?? []) {
      tools[t.index] ??= { arguments: "" };
      if (t.id) tools[t.index]!.id = t.id;
      if (t.function?.name) tools[t.index]!.name = t.function.name;
      tools[t.index]!.arguments += t.function?.arguments ?? "";
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  return { content, reasoning, finish, usage, tools };
}

const chunk = (delta: ChatChunk["choices"][0]["delta"], finish: string | null = null): ChatChunk => ({
  id: "chatcmpl-1",
  object: "chat.completion.chunk",
  created: 1,
  model: "gpt",
  choices: [{ index: 0, delta, finish_reason: finish }],
});

/** A chat stream with reasoning, text and two tool calls, then the usage chunk. */
export const CHAT_CHUNKS: ChatChunk[] = [
  chunk({ role: "assistant", content: "" }),
  chunk({ reasoning_content: "Think " }),
  chunk({ reasoning_content: "first." }),
  chunk({ content: "Two " }),
  chunk({ content: "calls." }),
  chunk({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "weather", arguments: "" } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
  chunk({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "time", arguments: "{}" } }] }),
  chunk({}, "tool_calls"),
  {
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt",
    choices: [],
    usage: { prompt_tokens: 50, completion_tokens: 12, total_tokens: 62, prompt_tokens_details: { cached_tokens: 20 } },
  },
];
