import { describe, expect, it } from "vitest";
import { type GatewayError, UpstreamError } from "../src/errors/errors.js";
import { SseReader, writeFrame } from "../src/proxy/sse.js";
import { chatToMessagesRequest, MessagesToChatStream, messagesToChatResponse } from "../src/proxy/translate/anthropic-from-chat.js";
import { ANTHROPIC_EVENTS, assembleChat } from "./helpers/stream-fixtures.js";

/** Chat completions served by an Anthropic deployment: each half of the translation on its own (pure functions). */
const options = { upstreamModel: "claude-sonnet-4-5", defaultMaxTokens: 4096, dropParams: false };

describe("a chat request as a Messages request", () => {
  it("moves system and developer messages to the system prompt and merges turns so they alternate", () => {
    const { body } = chatToMessagesRequest(
      {
        model: "claude",
        messages: [
          { role: "system", content: "Be brief." },
          { role: "developer", content: [{ type: "text", text: "Answer in French." }] },
          { role: "user", content: "Hi" },
          {
            role: "user",
            content: [
              { type: "text", text: "there" },
              { type: "image_url", image_url: { url: "data:image/png;base64,iVBOR" } },
            ],
          },
        ],
        max_tokens: 100,
        stop: "END",
        temperature: 0.2,
        user: "u-1",
      },
      options,
    );
    expect(body).toEqual({
      model: "claude-sonnet-4-5",
      max_tokens: 100,
      system: [
        { type: "text", text: "Be brief." },
        { type: "text", text: "Answer in French." },
      ],
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Hi" },
            { type: "text", text: "there" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBOR" } },
          ],
        },
      ],
      stop_sequences: ["END"],
      temperature: 0.2,
      metadata: { user_id: "u-1" },
    });
  });

  it("turns tool calls into tool_use blocks and tool results into one user turn", () => {
    const { body } = chatToMessagesRequest(
      {
        model: "claude",
        messages: [
          { role: "user", content: "Weather in Paris and Rome?" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              { id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
              { id: "call_2", type: "function", function: { name: "weather", arguments: '{"city":"Rome"}' } },
            ],
          },
          { role: "tool", tool_call_id: "call_1", content: "18C" },
          { role: "tool", tool_call_id: "call_2", content: "24C" },
        ],
        tools: [{ type: "function", function: { name: "weather", description: "Weather by city", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
        tool_choice: "required",
        parallel_tool_calls: false,
      },
      options,
    );
    expect(body.max_tokens).toBe(4096);
    expect(body.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "Weather in Paris and Rome?" }] },
      {
        role: "assistant",
        content: [
          { type: "tool_use", id: "call_1", name: "weather", input: { city: "Paris" } },
          { type: "tool_use", id: "call_2", name: "weather", input: { city: "Rome" } },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "call_1", content: "18C" },
          { type: "tool_result", tool_use_id: "call_2", content: "24C" },
        ],
      },
    ]);
    expect(body.tools).toEqual([{ name: "weather", description: "Weather by city", input_schema: { type: "object", properties: { city: { type: "string" } } } }]);
    expect(body.tool_choice).toEqual({ type: "any", disable_parallel_tool_use: true });
  });

  it("refuses a parameter Anthropic has no place for, naming it, unless the deployment drops parameters", () => {
    const request = { model: "claude", messages: [{ role: "user", content: "Hi" }], logprobs: true, seed: 7 };
    const refused = (() => {
      try {
        chatToMessagesRequest(request, options);
      } catch (err) {
        return err as GatewayError;
      }
    })();
    expect(refused?.status).toBe(400);
    expect(refused?.param).toBe("logprobs");
    expect(refused?.code).toBe("unsupported_parameter");
    const dropped = chatToMessagesRequest(request, { ...options, dropParams: true });
    expect(dropped.dropped).toEqual(["logprobs", "seed"]);
    expect(dropped.body).not.toHaveProperty("logprobs");
  });

  it("refuses tool arguments that are not JSON and content parts it cannot translate", () => {
    const badArgs = { model: "c", messages: [{ role: "assistant", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{nope" } }] }] };
    expect(() => chatToMessagesRequest(badArgs, options)).toThrow(/not valid JSON/);
    const audio = { model: "c", messages: [{ role: "user", content: [{ type: "input_audio", input_audio: {} }] }] };
    expect(() => chatToMessagesRequest(audio, options)).toThrow(/does not take/);
  });

  it("maps reasoning_effort to a thinking budget", () => {
    const { body } = chatToMessagesRequest({ model: "c", messages: [{ role: "user", content: "Hi" }], reasoning_effort: "medium" }, options);
    expect(body.thinking).toEqual({ type: "enabled", budget_tokens: 2048 });
  });
});

describe("a Messages answer as a chat answer", () => {
  it("joins text, turns tool_use into tool calls, keeps thinking, counts cached prompt tokens in the prompt", () => {
    const answer = messagesToChatResponse(
      {
        id: "msg_1",
        model: "claude-sonnet-4-5",
        content: [
          { type: "thinking", thinking: "Paris first.", signature: "sig" },
          { type: "text", text: "Let me check." },
          { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Paris" } },
        ],
        stop_reason: "tool_use",
        usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 100, cache_creation_input_tokens: 5 },
      },
      "claude-sonnet-4-5",
      1_700_000_000,
    );
    const choice = answer.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBe("Let me check.");
    expect(choice.message.reasoning_content).toBe("Paris first.");
    expect(choice.message.tool_calls).toEqual([{ id: "toolu_1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } }]);
    expect(answer.usage).toEqual({
      prompt_tokens: 115,
      completion_tokens: 20,
      total_tokens: 135,
      prompt_tokens_details: { cached_tokens: 100 },
      cache_read_input_tokens: 100,
      cache_creation_input_tokens: 5,
    });
  });
});

describe("an Anthropic stream as a chat stream", () => {
  it("translates event by event: text, reasoning, tool calls with their arguments, the finish reason and the usage", () => {
    const state = new MessagesToChatStream("claude-sonnet-4-5", 1_700_000_000, true);
    const chunks = ANTHROPIC_EVENTS.flatMap((e) => state.push(e));
    state.end();
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: "assistant", content: "" });
    expect(assembleChat(chunks)).toEqual({
      content: "Checking now — ünïcode.",
      reasoning: "Need the weather.",
      finish: "tool_calls",
      usage: {
        prompt_tokens: 32,
        completion_tokens: 42,
        total_tokens: 74,
        prompt_tokens_details: { cached_tokens: 7 },
        cache_read_input_tokens: 7,
        cache_creation_input_tokens: 0,
      },
      tools: [{ id: "toolu_7", name: "weather", arguments: '{"city": "Paris"}' }],
    });
    // Without include_usage, no usage chunk (OpenAI's contract).
    const quiet = new MessagesToChatStream("m", 0, false);
    expect(ANTHROPIC_EVENTS.flatMap((e) => quiet.push(e)).some((c) => c.usage)).toBe(false);
  });

  it("throws on a broken order, a cut stream and an in-stream error (overloaded told as a retryable 503)", () => {
    const deltaFirst = new MessagesToChatStream("m", 0, false);
    deltaFirst.push(ANTHROPIC_EVENTS[0]!);
    expect(() => deltaFirst.push({ type: "content_block_delta", index: 3, delta: { type: "text_delta", text: "x" } })).toThrow(/not open/);

    const cut = new MessagesToChatStream("m", 0, false);
    for (const e of ANTHROPIC_EVENTS.slice(0, 8)) cut.push(e);
    expect(() => cut.end()).toThrow(/before message_stop/);

    const overloaded = new MessagesToChatStream("m", 0, false);
    overloaded.push(ANTHROPIC_EVENTS[0]!);
    let error: unknown;
    try {
      overloaded.push({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).status).toBe(503);
    expect((error as UpstreamError).code).toBe("upstream_overloaded");
  });
});

describe("the SSE reader", () => {
  it("gives the same frames however the bytes are cut, multi-byte characters and CRLF included", () => {
    const text = `${ANTHROPIC_EVENTS.map((e) => writeFrame({ event: String(e.type), data: JSON.stringify(e) })).join("")}: a comment\n\n`.replace(/\n/g, "\r\n");
    const bytes = Buffer.from(text);
    const whole = new SseReader().push(bytes);
    expect(whole.map((f) => JSON.parse(f.data))).toEqual(ANTHROPIC_EVENTS);
    for (let seed = 1; seed <= 200; seed++) {
      const reader = new SseReader();
      const frames = [];
      let at = 0;
      let r = seed;
      while (at < bytes.length) {
        r = (r * 1103515245 + 12345) % 2 ** 31;
        const size = 1 + (r % 40);
        frames.push(...reader.push(bytes.subarray(at, at + size)));
        at += size;
      }
      frames.push(...reader.end());
      expect(frames).toEqual(whole);
    }
  });
});
