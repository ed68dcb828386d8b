// What a translation costs per event, in-process (the built modules of dist/): for each path a stream takes through
// the relay, every upstream event is timed from its bytes arriving to the client's bytes leaving — the SSE reader,
// the JSON parse, the state machine, the usage meter and the serialization, as the relay runs them. Beside them,
// the two native passthroughs (OpenAI-compatible chat, Anthropic's events to /v1/messages), which only meter.
// Target (docs/providers.md): p99 < 0.3 ms per event for every translation.
import { performance } from "node:perf_hooks";

const { sseUsageMeter, anthropicSseUsageMeter } = await import("../dist/limits/usage-meter.js");
const { MESSAGES } = await import("../dist/proxy/inbound/messages.js");
const { RESPONSES } = await import("../dist/proxy/inbound/responses.js");
const { chatStreamTranslation } = await import("../dist/proxy/relay.js");
const { SseReader, dataFrame } = await import("../dist/proxy/sse.js");
const { MessagesToChatStream } = await import("../dist/proxy/translate/anthropic-from-chat.js");
const { percentile, printTable, writeResult } = await import("./lib/harness.mjs");

const STREAMS = Number(process.env.BENCH_STREAMS ?? 400);
const DELTAS = 120; // text deltas a stream, plus a tool call of 30 argument pieces: a typical agent turn
const WORDS = ["The ", "gateway ", "translates ", "each ", "event ", "as ", "it ", "arrives, ", "ünïcödé ", "😀 "];

function anthropicFrames() {
  const frames = [];
  const add = (e) => frames.push(Buffer.from(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`));
  add({
    type: "message_start",
    message: {
      id: "msg_b",
      type: "message",
      role: "assistant",
      model: "claude",
      content: [],
      usage: { input_tokens: 1200, output_tokens: 1, cache_read_input_tokens: 800, cache_creation_input_tokens: 0 },
    },
  });
  add({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
  for (let i = 0; i < DELTAS; i++) add({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: WORDS[i % WORDS.length] } });
  add({ type: "content_block_stop", index: 0 });
  add({ type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "toolu_b", name: "search", input: {} } });
  for (let i = 0; i < 30; i++) add({ type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: i === 0 ? '{"q": "' : i === 29 ? '"}' : "word " } });
  add({ type: "content_block_stop", index: 1 });
  add({ type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 180 } });
  add({ type: "message_stop" });
  return frames;
}

function chatFrames() {
  const chunk = (delta, finish = null) => ({ id: "chatcmpl-b", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }] });
  const frames = [chunk({ role: "assistant", content: "" })];
  for (let i = 0; i < DELTAS; i++) frames.push(chunk({ content: WORDS[i % WORDS.length] }));
  frames.push(chunk({ tool_calls: [{ index: 0, id: "call_b", type: "function", function: { name: "search", arguments: "" } }] }));
  for (let i = 0; i < 30; i++) frames.push(chunk({ tool_calls: [{ index: 0, function: { arguments: i === 0 ? '{"q": "' : i === 29 ? '"}' : "word " } }] }));
  frames.push(chunk({}, "tool_calls"));
  frames.push({ ...chunk({}), choices: [], usage: { prompt_tokens: 2000, completion_tokens: 180, total_tokens: 2180 } });
  return [...frames.map((c) => Buffer.from(dataFrame(c))), Buffer.from("data: [DONE]\n\n")];
}

/** Times `pass` on each frame of `frames`, STREAMS times over (a fresh pipeline a stream); returns per-event µs. */
function timePerEvent(make, frames) {
  const samples = [];
  let sink = 0;
  for (let s = 0; s < STREAMS; s++) {
    const pipeline = make();
    for (const frame of frames) {
      const t0 = performance.now();
      const out = pipeline.pass(frame);
      samples.push((performance.now() - t0) * 1000);
      sink += out.length;
    }
    sink += pipeline.end().length;
  }
  if (sink === 0) throw new Error("nothing was produced");
  return samples.sort((a, b) => a - b);
}

/** The Anthropic provider's own loop (providers/anthropic.ts chatStreamOf), one frame at a time, then the relay's meter. */
function anthropicToChat() {
  const reader = new SseReader();
  const state = new MessagesToChatStream("claude", 1, true);
  const meter = sseUsageMeter(false);
  return {
    pass(frame) {
      let out = "";
      for (const f of reader.push(frame)) for (const c of state.push(JSON.parse(f.data))) out += dataFrame(c);
      return meter.pass(out);
    },
    end: () => meter.end(),
  };
}

const paths = [
  { path: "chat → chat (OpenAI-compatible, native: metered only)", frames: chatFrames(), make: () => sseUsageMeter(false) },
  { path: "Anthropic → /v1/messages (native: metered only)", frames: anthropicFrames(), make: () => anthropicSseUsageMeter() },
  { path: "Anthropic → chat (chat on an Anthropic deployment)", frames: anthropicFrames(), make: anthropicToChat },
  {
    path: "chat → Messages (/v1/messages on a chat deployment)",
    frames: chatFrames(),
    make: () => chatStreamTranslation(MESSAGES, { model: "m" }, sseUsageMeter(true)),
  },
  {
    path: "chat → Responses (/v1/responses on a chat deployment)",
    frames: chatFrames(),
    make: () => chatStreamTranslation(RESPONSES, { model: "m", input: "x" }, sseUsageMeter(true)),
  },
];

// Warm up every path (the JIT), then measure.
for (const p of paths) timePerEvent(p.make, p.frames);
const rows = [];
const results = [];
for (const p of paths) {
  const us = timePerEvent(p.make, p.frames);
  const r = { path: p.path, events: us.length, p50_us: +percentile(us, 50).toFixed(2), p99_us: +percentile(us, 99).toFixed(2), max_us: +us.at(-1).toFixed(1) };
  results.push(r);
  rows.push({ ...r, "p99 < 300 µs": r.p99_us < 300 ? "yes" : "NO" });
}
const table = printTable(`Translation cost per event (${STREAMS} streams of ${DELTAS + 36} events each, in-process)`, rows);
writeResult("translation", { streams: STREAMS, target_p99_us: 300, results, markdown: table });
