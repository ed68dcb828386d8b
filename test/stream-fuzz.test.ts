import { describe, expect, it } from "vitest";
import { tokensFromAnthropicUsage, tokensFromResponsesUsage, tokensFromUsage, type TokenCount } from "../src/limits/pricing.js";
import { anthropicSseUsageMeter, sseUsageMeter } from "../src/limits/usage-meter.js";
import { MESSAGES } from "../src/proxy/inbound/messages.js";
import { RESPONSES } from "../src/proxy/inbound/responses.js";
import { chatStreamOf } from "../src/proxy/providers/anthropic.js";
import { chatStreamTranslation } from "../src/proxy/relay.js";
import { SseReader } from "../src/proxy/sse.js";
import { MessagesToChatStream } from "../src/proxy/translate/anthropic-from-chat.js";
import type { ChatChunk } from "../src/proxy/translate/chat-types.js";
import { assembleChat } from "./helpers/stream-fixtures.js";
import { checkAnthropicEvents, checkResponsesEvents } from "./helpers/stream-validators.js";

/**
 * Random upstream streams — Anthropic's events and OpenAI's chat chunks: thinking, text with characters of every
 * UTF-8 length, tool calls with arguments in pieces, random usage — cut at random byte boundaries and pushed through
 * every translation the relay makes, as the relay does it. Every output must be a valid event sequence of its shape
 * (test/helpers/stream-validators.ts) whose text, arguments and usage equal the upstream's. The same streams cut short
 * at a random byte must end in an error, or (cut after the last event) be whole.
 *
 * `npm test` runs 500 streams per translation; `npm run fuzz:streams` runs STREAM_FUZZ_COUNT (10,000) of each.
 */
const COUNT = Number(process.env.STREAM_FUZZ_COUNT ?? 500);

/** A small deterministic generator (mulberry32), so a failure names the seed that reproduces it. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const ALPHABET = ["a", "b", " ", "é", "€", "😀", "\n", '"', "\\", "{", "}", ":", ",", "ü", "漢"];
  const text = (max: number) => Array.from({ length: 1 + int(max) }, () => ALPHABET[int(ALPHABET.length)]).join("");
  return { next, int, text };
}

type Block = { kind: "thinking" | "text" | "tool"; pieces: string[]; id?: string; name?: string };

interface Scenario {
  blocks: Block[];
  usage: { input: number; output: number; cacheRead: number; cacheWrite: number };
  stop: "end_turn" | "tool_use" | "max_tokens";
}

function scenario(r: ReturnType<typeof random>): Scenario {
  const blocks: Block[] = [];
  if (r.next() < 0.3) blocks.push({ kind: "thinking", pieces: Array.from({ length: 1 + r.int(4) }, () => r.text(12)) });
  if (r.next() < 0.8) blocks.push({ kind: "text", pieces: Array.from({ length: 1 + r.int(6) }, () => r.text(20)) });
  const tools = r.int(3);
  for (let i = 0; i < tools; i++) {
    const args = JSON.stringify({ q: r.text(15), n: r.int(1000), deep: { list: [r.text(5), r.int(9)] } });
    const pieces: string[] = [];
    for (let at = 0; at < args.length; ) {
      const size = 1 + r.int(8);
      pieces.push(args.slice(at, at + size));
      at += size;
    }
    blocks.push({ kind: "tool", pieces, id: `call_${i}_${r.int(1e6)}`, name: `tool_${i}` });
  }
  if (blocks.length === 0) blocks.push({ kind: "text", pieces: ["x"] });
  return {
    blocks,
    usage: { input: r.int(5000), output: 1 + r.int(2000), cacheRead: r.int(3) === 0 ? r.int(4000) : 0, cacheWrite: r.int(4) === 0 ? r.int(800) : 0 },
    stop: tools > 0 ? "tool_use" : r.next() < 0.2 ? "max_tokens" : "end_turn",
  };
}

const joined = (b: Block) => b.pieces.join("");
const EOLS = ["\n", "\r\n", "\r"];

/** Anthropic's SSE bytes for a scenario (random line endings, pings, an event: line or not). */
function anthropicBytes(s: Scenario, r: ReturnType<typeof random>): Buffer {
  const events: Array<Record<string, unknown>> = [
    {
      type: "message_start",
      message: {
        id: "msg_f",
        type: "message",
        role: "assistant",
        model: "claude",
        content: [],
        usage: { input_tokens: s.usage.input, output_tokens: 1, cache_read_input_tokens: s.usage.cacheRead, cache_creation_input_tokens: s.usage.cacheWrite },
      },
    },
  ];
  s.blocks.forEach((b, index) => {
    if (r.next() < 0.2) events.push({ type: "ping" });
    const block = b.kind === "tool" ? { type: "tool_use", id: b.id, name: b.name, input: {} } : b.kind === "text" ? { type: "text", text: "" } : { type: "thinking", thinking: "" };
    events.push({ type: "content_block_start", index, content_block: block });
    for (const p of b.pieces) {
      const delta =
        b.kind === "tool" ? { type: "input_json_delta", partial_json: p } : b.kind === "text" ? { type: "text_delta", text: p } : { type: "thinking_delta", thinking: p };
      events.push({ type: "content_block_delta", index, delta });
    }
    if (b.kind === "thinking") events.push({ type: "content_block_delta", index, delta: { type: "signature_delta", signature: "sig" } });
    events.push({ type: "content_block_stop", index });
  });
  events.push({ type: "message_delta", delta: { stop_reason: s.stop, stop_sequence: null }, usage: { output_tokens: s.usage.output } });
  events.push({ type: "message_stop" });
  const eol = EOLS[r.int(3)]!;
  return Buffer.from(events.map((e) => `event: ${e.type}${eol}data: ${JSON.stringify(e)}${eol}${eol}`).join(""));
}

/** OpenAI chat SSE bytes for a scenario, the usage chunk last, then [DONE]. */
function chatBytes(s: Scenario, r: ReturnType<typeof random>): Buffer {
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    id: "chatcmpl-f",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
  const chunks: unknown[] = [chunk({ role: "assistant", content: "" })];
  let tool = 0;
  for (const b of s.blocks) {
    if (b.kind === "thinking") for (const p of b.pieces) chunks.push(chunk({ reasoning_content: p }));
    if (b.kind === "text") for (const p of b.pieces) chunks.push(chunk({ content: p }));
    if (b.kind === "tool") {
      const index = tool++;
      chunks.push(chunk({ tool_calls: [{ index, id: b.id, type: "function", function: { name: b.name, arguments: "" } }] }));
      for (const p of b.pieces) chunks.push(chunk({ tool_calls: [{ index, function: { arguments: p } }] }));
    }
  }
  chunks.push(chunk({}, s.stop === "tool_use" ? "tool_calls" : s.stop === "max_tokens" ? "length" : "stop"));
  const prompt = s.usage.input + s.usage.cacheRead + s.usage.cacheWrite;
  chunks.push({
    ...chunk({}),
    choices: [],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: s.usage.output,
      total_tokens: prompt + s.usage.output,
      prompt_tokens_details: { cached_tokens: s.usage.cacheRead },
      cache_read_input_tokens: s.usage.cacheRead,
      cache_creation_input_tokens: s.usage.cacheWrite,
    },
  });
  const eol = EOLS[r.int(3)]!;
  return Buffer.from(`${chunks.map((c) => `data: ${JSON.stringify(c)}${eol}${eol}`).join("")}data: [DONE]${eol}${eol}`);
}

function cuts(bytes: Buffer, r: ReturnType<typeof random>): Buffer[] {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const size = 1 + r.int(r.next() < 0.5 ? 7 : 300);
    parts.push(bytes.subarray(at, at + size));
    at += size;
  }
  return parts;
}

const expectedTokens = (s: Scenario): TokenCount => {
  const t: TokenCount = { promptTokens: s.usage.input + s.usage.cacheRead + s.usage.cacheWrite, completionTokens: s.usage.output };
  if (s.usage.cacheRead) t.cacheReadTokens = s.usage.cacheRead;
  if (s.usage.cacheWrite) t.cacheCreationTokens = s.usage.cacheWrite;
  return t;
};

async function collect(source: AsyncIterable<string | Uint8Array>): Promise<string> {
  let out = "";
  for await (const c of source) out += typeof c === "string" ? c : Buffer.from(c).toString("utf8");
  return out;
}

async function* chunksOf(parts: Buffer[]): AsyncIterable<Uint8Array> {
  yield* parts;
}

const framesOf = (text: string) => [...new SseReader().push(text)];

/** Anthropic events → chat chunks (an Anthropic deployment serving chat), as the provider does it. */
async function anthropicToChat(parts: Buffer[]): Promise<ChatChunk[]> {
  const text = await collect(chatStreamOf(chunksOf(parts), new MessagesToChatStream("claude", 1, true)));
  const frames = framesOf(text);
  if (frames.at(-1)?.data !== "[DONE]") throw new Error("no [DONE] at the end");
  return frames.slice(0, -1).map((f) => JSON.parse(f.data));
}

/** Chat SSE bytes → another shape, as the relay does it (meter, then translation). */
function throughRelay(api: typeof MESSAGES, parts: Array<Buffer | string>, body: Record<string, unknown>) {
  const meter = sseUsageMeter(true);
  const t = chatStreamTranslation(api, body, meter);
  let out = "";
  for (const p of parts) out += t.pass!(p);
  out += t.end!();
  return { events: framesOf(out).map((f) => JSON.parse(f.data)), usage: meter.usage };
}

function checkChat(chunks: ChatChunk[], s: Scenario) {
  const seen = assembleChat(chunks);
  expect(seen.content).toBe(
    s.blocks
      .filter((b) => b.kind === "text")
      .map(joined)
      .join(""),
  );
  expect(seen.reasoning).toBe(
    s.blocks
      .filter((b) => b.kind === "thinking")
      .map(joined)
      .join(""),
  );
  expect(seen.tools.map((t) => [t.id, t.name, t.arguments])).toEqual(s.blocks.filter((b) => b.kind === "tool").map((b) => [b.id, b.name, joined(b)]));
  expect(tokensFromUsage(seen.usage)).toEqual(expectedTokens(s));
}

function checkMessages(events: Array<Record<string, unknown>>, s: Scenario) {
  const seen = checkAnthropicEvents(events);
  // Consecutive text pieces are one block; a block of each kind in the upstream's order.
  const kinds = s.blocks.map((b) => (b.kind === "tool" ? "tool_use" : b.kind));
  expect(seen.blocks.map((b) => b.type)).toEqual(kinds);
  expect(seen.blocks.map((b) => b.text)).toEqual(s.blocks.map(joined));
  expect(tokensFromAnthropicUsage(seen.usage)).toEqual(expectedTokens(s));
}

function checkResponses(events: Array<Record<string, unknown>>, s: Scenario) {
  const { items, response } = checkResponsesEvents(events);
  expect(items.map((i) => i.type)).toEqual(s.blocks.map((b) => (b.kind === "tool" ? "function_call" : b.kind === "text" ? "message" : "reasoning")));
  const texts = items.map((i) =>
    i.type === "function_call" ? i.arguments : i.type === "message" ? (i.content as Array<{ text: string }>)[0]!.text : (i.summary as Array<{ text: string }>)[0]!.text,
  );
  expect(texts).toEqual(s.blocks.map(joined));
  const t = expectedTokens(s);
  const fromResponses = tokensFromResponsesUsage(response.usage);
  expect(fromResponses).toEqual({ promptTokens: t.promptTokens, completionTokens: t.completionTokens, ...(t.cacheReadTokens ? { cacheReadTokens: t.cacheReadTokens } : {}) });
  expect(response.status).toBe(s.stop === "max_tokens" ? "incomplete" : "completed");
}

/** A stream cut at `at` bytes: the translation must throw, or — cut after its last event — be whole. */
async function cutShort(run: (parts: Buffer[]) => Promise<void> | void, bytes: Buffer, r: ReturnType<typeof random>): Promise<"error" | "whole"> {
  const at = r.int(bytes.length);
  try {
    await run(cuts(bytes.subarray(0, at), r));
    return "whole";
  } catch {
    return "error";
  }
}

describe(`stream translations, ${COUNT} random streams each, cut at random byte boundaries`, () => {
  it("Anthropic events → chat chunks (an Anthropic deployment serving chat)", async () => {
    for (let seed = 1; seed <= COUNT; seed++) {
      const r = random(seed);
      const s = scenario(r);
      const bytes = anthropicBytes(s, r);
      try {
        checkChat(await anthropicToChat(cuts(bytes, r)), s);
        const short = await cutShort((parts) => anthropicToChat(parts).then((c) => checkChat(c, s)), bytes, r);
        expect(["error", "whole"]).toContain(short);
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`);
      }
    }
  }, 120_000);

  it("Anthropic events passed through as they are (an Anthropic deployment serving /v1/messages), usage read on the way", () => {
    for (let seed = 1; seed <= COUNT; seed++) {
      const r = random(seed);
      const s = scenario(r);
      const bytes = anthropicBytes(s, r);
      const meter = anthropicSseUsageMeter();
      // Bytes, as the relay writes them: a chunk may end inside a character.
      const sent: Buffer[] = [];
      for (const p of cuts(bytes, r)) {
        const out = meter.pass(p);
        sent.push(typeof out === "string" ? Buffer.from(out) : Buffer.from(out));
      }
      sent.push(Buffer.from(meter.end()));
      const out = Buffer.concat(sent).toString("utf8");
      try {
        checkMessages(
          framesOf(out).map((f) => JSON.parse(f.data)),
          s,
        );
        expect(meter.usage).toEqual(expectedTokens(s));
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`);
      }
    }
  }, 120_000);

  it("chat chunks → Anthropic events (/v1/messages on a chat deployment)", () => {
    for (let seed = 1; seed <= COUNT; seed++) {
      const r = random(seed);
      const s = scenario(r);
      const bytes = chatBytes(s, r);
      try {
        const { events, usage } = throughRelay(MESSAGES, cuts(bytes, r), { model: "m" });
        checkMessages(events, s);
        expect(usage).toEqual(expectedTokens(s));
        const at = r.int(bytes.length);
        const short = (() => {
          try {
            checkMessages(throughRelay(MESSAGES, cuts(bytes.subarray(0, at), r), { model: "m" }).events, s);
            return "whole";
          } catch {
            return "error";
          }
        })();
        expect(["error", "whole"]).toContain(short);
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`);
      }
    }
  }, 120_000);

  it("chat chunks → Responses events (/v1/responses on a chat deployment)", () => {
    for (let seed = 1; seed <= COUNT; seed++) {
      const r = random(seed);
      const s = scenario(r);
      const bytes = chatBytes(s, r);
      try {
        const { events, usage } = throughRelay(RESPONSES, cuts(bytes, r), { model: "m", input: "x" });
        checkResponses(events, s);
        expect(usage).toEqual(expectedTokens(s));
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`);
      }
    }
  }, 120_000);

  it("Anthropic events → chat → Responses events (/v1/responses on an Anthropic deployment)", async () => {
    for (let seed = 1; seed <= COUNT; seed++) {
      const r = random(seed);
      const s = scenario(r);
      const bytes = anthropicBytes(s, r);
      try {
        const chat = await collect(chatStreamOf(chunksOf(cuts(bytes, r)), new MessagesToChatStream("claude", 1, true)));
        const { events, usage } = throughRelay(RESPONSES, cuts(Buffer.from(chat), r), { model: "m", input: "x" });
        checkResponses(events, s);
        expect(usage).toEqual(expectedTokens(s));
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`);
      }
    }
  }, 120_000);
});
