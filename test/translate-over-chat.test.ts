import { describe, expect, it } from "vitest";
import type { GatewayError } from "../src/errors/errors.js";
import { SseReader } from "../src/proxy/sse.js";
import type { ChatResponse } from "../src/proxy/translate/chat-types.js";
import { ChatToMessagesStream, chatToMessagesResponse, messagesToChatRequest } from "../src/proxy/translate/messages-over-chat.js";
import { ChatToResponsesStream, chatToResponsesResponse, responsesToChatRequest } from "../src/proxy/translate/responses-over-chat.js";
import { CHAT_CHUNKS } from "./helpers/stream-fixtures.js";
import { checkAnthropicEvents, checkResponsesEvents } from "./helpers/stream-validators.js";

/** Anthropic's Messages API and OpenAI's Responses API served by chat deployments: each half on its own. */

const events = (text: string) => new SseReader().push(text).map((f) => JSON.parse(f.data));

function refusal(f: () => unknown): GatewayError | undefined {
  try {
    f();
  } catch (err) {
    return err as GatewayError;
  }
  return undefined;
}

describe("a Messages request as chat", () => {
  it("translates system, turns, tool use and results, images, tools, tool_choice and thinking", () => {
    const chat = messagesToChatRequest({
      model: "claude-on-gpt",
      max_tokens: 500,
      system: [{ type: "text", text: "You are terse." }],
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Weather?" },
            { type: "image", source: { type: "base64", media_type: "image/jpeg", data: "AAAA" } },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "hmm", signature: "s" },
            { type: "text", text: "Checking." },
            { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Oslo" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "-3C" }] },
            { type: "text", text: "Thanks" },
          ],
        },
      ],
      tools: [{ name: "weather", description: "d", input_schema: { type: "object" } }],
      tool_choice: { type: "tool", name: "weather", disable_parallel_tool_use: true },
      stop_sequences: ["\n\nHuman:"],
      metadata: { user_id: "u-9" },
      thinking: { type: "enabled", budget_tokens: 3000 },
      stream: true,
    });
    expect(chat).toEqual({
      model: "claude-on-gpt",
      max_tokens: 500,
      messages: [
        { role: "system", content: "You are terse." },
        {
          role: "user",
          content: [
            { type: "text", text: "Weather?" },
            { type: "image_url", image_url: { url: "data:image/jpeg;base64,AAAA" } },
          ],
        },
        { role: "assistant", content: "Checking.", tool_calls: [{ id: "toolu_1", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } }] },
        { role: "tool", tool_call_id: "toolu_1", content: "-3C" },
        { role: "user", content: "Thanks" },
      ],
      stop: ["\n\nHuman:"],
      stream: true,
      tools: [{ type: "function", function: { name: "weather", description: "d", parameters: { type: "object" } } }],
      tool_choice: { type: "function", function: { name: "weather" } },
      parallel_tool_calls: false,
      user: "u-9",
      reasoning_effort: "medium",
    });
  });

  it("refuses Anthropic's server tools and documents for a chat model", () => {
    const base = { model: "m", max_tokens: 10, messages: [{ role: "user", content: "hi" }] };
    expect(refusal(() => messagesToChatRequest({ ...base, tools: [{ type: "web_search_20250305", name: "web_search" }] }))?.code).toBe("unsupported_tool");
    const doc = { ...base, messages: [{ role: "user", content: [{ type: "document", source: {} }] }] };
    expect(refusal(() => messagesToChatRequest(doc))?.code).toBe("unsupported_content");
  });
});

describe("a chat answer as a Messages answer", () => {
  it("has thinking, text and tool_use blocks, the stop reason and Anthropic's usage (cached tokens apart)", () => {
    const answer: ChatResponse = {
      id: "chatcmpl-xyz",
      object: "chat.completion",
      created: 1,
      model: "gpt",
      choices: [
        {
          index: 0,
          finish_reason: "tool_calls",
          logprobs: null,
          message: { role: "assistant", content: "Sure.", reasoning_content: "r", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: '{"a":1}' } }] },
        },
      ],
      usage: { prompt_tokens: 50, completion_tokens: 7, total_tokens: 57, prompt_tokens_details: { cached_tokens: 20 } },
    };
    expect(chatToMessagesResponse(answer, "claude-on-gpt")).toEqual({
      id: "msg_xyz",
      type: "message",
      role: "assistant",
      model: "claude-on-gpt",
      content: [
        { type: "thinking", thinking: "r", signature: "" },
        { type: "text", text: "Sure." },
        { type: "tool_use", id: "c1", name: "f", input: { a: 1 } },
      ],
      stop_reason: "tool_use",
      stop_sequence: null,
      usage: { input_tokens: 30, output_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 20 },
    });
  });
});

describe("a chat stream as a Messages stream", () => {
  it("opens one block at a time, each delta in its own block, and ends with the stop reason and the usage", () => {
    const t = new ChatToMessagesStream("claude-on-gpt");
    const text = CHAT_CHUNKS.map((c) => t.push(c)).join("") + t.end();
    const seen = checkAnthropicEvents(events(text));
    expect(seen.blocks.map((b) => [b.type, b.text])).toEqual([
      ["thinking", "Think first."],
      ["text", "Two calls."],
      ["tool_use", '{"city":"Paris"}'],
      ["tool_use", "{}"],
    ]);
    expect(seen.blocks[2]).toMatchObject({ id: "call_a", name: "weather" });
    expect(seen.stopReason).toBe("tool_use");
    expect(seen.usage).toEqual({ input_tokens: 30, output_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 20 });
  });

  it("throws when the chat stream is cut before its finish reason", () => {
    const t = new ChatToMessagesStream("m");
    for (const c of CHAT_CHUNKS.slice(0, 5)) t.push(c);
    expect(() => t.end()).toThrow(/before its finish_reason/);
  });
});

describe("a Responses request as chat", () => {
  it("translates instructions, input items (messages, function calls and their outputs), tools, text format and reasoning", () => {
    const chat = responsesToChatRequest({
      model: "m",
      instructions: "Be kind.",
      input: [
        { role: "user", content: [{ type: "input_text", text: "Weather?" }] },
        { type: "function_call", call_id: "c1", name: "weather", arguments: '{"city":"Oslo"}' },
        { type: "function_call", call_id: "c2", name: "time", arguments: "{}" },
        { type: "function_call_output", call_id: "c1", output: "-3C" },
        { type: "function_call_output", call_id: "c2", output: "noon" },
        { type: "reasoning", id: "rs_1", summary: [] },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "It is -3C." }] },
      ],
      tools: [{ type: "function", name: "weather", parameters: { type: "object" }, strict: true }],
      tool_choice: { type: "function", name: "weather" },
      max_output_tokens: 300,
      text: { format: { type: "json_schema", name: "w", schema: { type: "object" }, strict: true } },
      reasoning: { effort: "low" },
      stream: true,
    });
    expect(chat).toEqual({
      model: "m",
      messages: [
        { role: "system", content: "Be kind." },
        { role: "user", content: [{ type: "text", text: "Weather?" }] },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "c1", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } },
            { id: "c2", type: "function", function: { name: "time", arguments: "{}" } },
          ],
        },
        { role: "tool", tool_call_id: "c1", content: "-3C" },
        { role: "tool", tool_call_id: "c2", content: "noon" },
        { role: "assistant", content: "It is -3C." },
      ],
      max_tokens: 300,
      stream: true,
      tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" }, strict: true } }],
      tool_choice: { type: "function", function: { name: "weather" } },
      response_format: { type: "json_schema", json_schema: { name: "w", schema: { type: "object" }, strict: true, description: undefined } },
      reasoning_effort: "low",
    });
  });

  it("refuses previous_response_id (nothing is stored) and built-in tools, saying why", () => {
    const stored = refusal(() => responsesToChatRequest({ model: "m", input: "hi", previous_response_id: "resp_1" }));
    expect(stored?.code).toBe("unsupported_parameter");
    expect(stored?.message).toMatch(/not stored/);
    expect(refusal(() => responsesToChatRequest({ model: "m", input: "hi", tools: [{ type: "web_search_preview" }] }))?.code).toBe("unsupported_tool");
  });
});

describe("a chat answer and stream as a Responses answer and stream", () => {
  it("answers with reasoning, message and function call items and the Responses usage", () => {
    const answer: ChatResponse = {
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1,
      model: "gpt",
      choices: [{ index: 0, finish_reason: "length", logprobs: null, message: { role: "assistant", content: "Hello", reasoning_content: "r" } }],
      usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
    };
    const r = chatToResponsesResponse(answer, { model: "m", input: "hi" }) as Record<string, any>;
    expect(r.object).toBe("response");
    expect(r.status).toBe("incomplete");
    expect(r.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(r.store).toBe(false);
    expect(r.output.map((o: { type: string }) => o.type)).toEqual(["reasoning", "message"]);
    expect(r.output[1].content).toEqual([{ type: "output_text", text: "Hello", annotations: [] }]);
    expect(r.usage).toEqual({ input_tokens: 9, input_tokens_details: { cached_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 12 });
  });

  it("streams each item in turn with its deltas, numbered, and completes with the items and the usage", () => {
    const t = new ChatToResponsesStream({ model: "m", input: "hi" });
    const text = CHAT_CHUNKS.map((c) => t.push(c)).join("") + t.end();
    const { items, response } = checkResponsesEvents(events(text));
    expect(items.map((i) => i.type)).toEqual(["reasoning", "message", "function_call", "function_call"]);
    expect(items[2]).toMatchObject({ call_id: "call_a", name: "weather", arguments: '{"city":"Paris"}', status: "completed" });
    expect(response.status).toBe("completed");
    expect(response.usage).toEqual({
      input_tokens: 50,
      input_tokens_details: { cached_tokens: 20 },
      output_tokens: 12,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 62,
    });
  });
});
