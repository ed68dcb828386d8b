import { createHash, randomUUID } from "node:crypto";
import { BadRequestError } from "../../errors/errors.js";
import type { Dispatcher } from "undici";
import type { Provider, UpstreamCall, UpstreamResponse } from "../provider.js";
import { dispatchThroughForward } from "./forward-dispatch.js";

/**
 * `mock/<name>`: answers in-process, with no network, in OpenAI's shapes, streaming included.
 * A `mock_response` string in the request body sets the reply text.
 */
const DEFAULT_REPLY = "Hello from Gatehouse! This reply comes from the built-in mock model.";

export class MockProvider implements Provider {
  speaks(endpoint: UpstreamCall["endpoint"]): boolean {
    return endpoint === "chat.completions" || endpoint === "completions" || endpoint === "embeddings";
  }

  /** The same answers through dispatch callbacks: the relay's straight attempts reach the mock too. */
  dispatch(call: Omit<UpstreamCall, "signal">, handler: Dispatcher.DispatchHandler): void {
    dispatchThroughForward((c) => this.forward(c), call, handler);
  }

  async forward(call: UpstreamCall): Promise<UpstreamResponse> {
    const { body } = call;
    const model = String(body.model);
    if (call.endpoint === "embeddings") {
      const inputs = Array.isArray(body.input) ? body.input.length : 1;
      const dims = embeddingDims(body.dimensions);
      // What a mock produces is bounded by what it is asked, never multiplied into megabytes (a 3 KB request
      // once made 88 MB): OpenAI's own limit on inputs, and a cap on the numbers returned.
      if (inputs > MAX_EMBEDDING_INPUTS || inputs * dims > MAX_EMBEDDING_VALUES) {
        const refusal = new BadRequestError(`the mock model returns at most ${MAX_EMBEDDING_INPUTS} embeddings and ${MAX_EMBEDDING_VALUES} numbers per request`, {
          code: "mock_limit",
          param: "input",
        });
        return json(refusal.toBody(), refusal.status);
      }
      return json(embeddings(model, body.input, dims, body.encoding_format === "base64"));
    }
    // A mock reply is at most 64 KiB, whatever the request asks.
    const reply = typeof body.mock_response === "string" ? body.mock_response.slice(0, 65_536) : DEFAULT_REPLY;
    const promptTokens = estimateTokens(JSON.stringify(call.endpoint === "completions" ? (body.prompt ?? "") : (body.messages ?? "")));
    const usage = { prompt_tokens: promptTokens, completion_tokens: estimateTokens(reply), total_tokens: promptTokens + estimateTokens(reply) };
    const id = `${call.endpoint === "completions" ? "cmpl" : "chatcmpl"}-mock-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    if (!call.stream) {
      if (call.endpoint === "completions") {
        return json({ id, object: "text_completion", created, model, choices: [{ index: 0, text: reply, finish_reason: "stop", logprobs: null }], usage });
      }
      return json({
        id,
        object: "chat.completion",
        created,
        model,
        choices: [{ index: 0, message: { role: "assistant", content: reply }, finish_reason: "stop", logprobs: null }],
        usage,
      });
    }
    const includeUsage = (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    return { status: 200, contentType: "text/event-stream", body: sse(call, { id, created, model, reply, usage: includeUsage ? usage : null }) };
  }
}

function json(value: unknown, status = 200): UpstreamResponse {
  return { status, contentType: "application/json", body: [JSON.stringify(value)] };
}

async function* sse(call: UpstreamCall, r: { id: string; created: number; model: string; reply: string; usage: object | null }): AsyncIterable<string> {
  const pieces = r.reply.match(/\S+\s*/g) ?? [""];
  const chat = call.endpoint === "chat.completions";
  const frame = (choice: object, extra: object = {}) =>
    `data: ${JSON.stringify({ id: r.id, object: chat ? "chat.completion.chunk" : "text_completion", created: r.created, model: r.model, choices: [choice], ...extra })}\n\n`;
  for (let i = 0; i < pieces.length; i++) {
    if (call.signal.aborted) return;
    const delta = chat ? { delta: i === 0 ? { role: "assistant", content: pieces[i] } : { content: pieces[i] } } : { text: pieces[i] };
    yield frame({ index: 0, ...delta, finish_reason: null });
    // Yield to the event loop between chunks, as a network stream would.
    await new Promise((resolve) => setImmediate(resolve));
  }
  yield frame({ index: 0, ...(chat ? { delta: {} } : { text: "" }), finish_reason: "stop" });
  if (r.usage)
    yield `data: ${JSON.stringify({ id: r.id, object: chat ? "chat.completion.chunk" : "text_completion", created: r.created, model: r.model, choices: [], usage: r.usage })}\n\n`;
  yield "data: [DONE]\n\n";
}

const MAX_EMBEDDING_INPUTS = 2_048;
const MAX_EMBEDDING_VALUES = 262_144;

function embeddingDims(dimensions: unknown): number {
  return typeof dimensions === "number" && dimensions > 0 && dimensions <= 4096 ? Math.floor(dimensions) : 16;
}

function embeddings(model: string, input: unknown, dims: number, base64: boolean) {
  const inputs = Array.isArray(input) ? input : [input ?? ""];
  const encode = (v: number[]) => (base64 ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v);
  const data = inputs.map((item, index) => ({ object: "embedding", index, embedding: encode(deterministicVector(JSON.stringify(item), dims)) }));
  const tokens = inputs.reduce<number>((n, item) => n + estimateTokens(JSON.stringify(item)), 0);
  return { object: "list", data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}

/** The same text always embeds to the same unit vector, so tests can compare results. */
function deterministicVector(text: string, dims: number): number[] {
  const values: number[] = [];
  let block = createHash("sha256").update(text).digest();
  while (values.length < dims) {
    for (let i = 0; i + 1 < block.length && values.length < dims; i += 2) values.push(block.readUInt16BE(i) / 32_767.5 - 1);
    block = createHash("sha256").update(block).digest();
  }
  const norm = Math.hypot(...values) || 1;
  return values.map((v) => v / norm);
}

/** About four characters a token: the usual rule of thumb, good enough for a mock's usage numbers. */
export function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}
