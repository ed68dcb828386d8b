import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Real HTTP servers that answer like Anthropic's Messages API and Azure OpenAI, replaying event streams shaped like
 * the real ones (Anthropic's API reference; Azure's `/openai/deployments/{deployment}/…?api-version=`), and
 * recording what they receive (path, query, headers, body) so tests can check what the gateway sent.
 *
 * Anthropic, by the model the request names:
 *  - "claude-text": text; usage with cache reads and writes (100 in, 50 read, 10 written, 20 out)
 *  - "claude-tools": a text block, then a tool_use whose input arrives as input_json_delta pieces
 *  - "claude-thinking": a thinking block (with its signature_delta), then text
 *  - "claude-stream-error": starts streaming, then, 50 ms later, an in-stream `error` event (overloaded_error)
 *  - "claude-overloaded": 529, Anthropic's overloaded error
 *  - "claude-first-error": 200, then at once an in-stream `error` event (overloaded_error), as Anthropic sends under load
 *  - "claude-hang": streams its start and a first text delta, then nothing (a client that leaves must end the call)
 *  - count_tokens: `input_tokens` = the request body's length / 10 (a number the gateway cannot make up)
 * Azure, by the deployment in the path:
 *  - "gpt-az": chat (streamed or not), completions, embeddings, with usage
 *  - "gpt-az-filtered": 400, Azure's content-filter refusal
 * OpenAI's own API, `POST /v1/responses` (the Responses API, which only OpenAI itself speaks):
 *  - a text answer, or its event stream (`response.created` … `response.completed`), with OPENAI_RESPONSES_USAGE
 * `aborted(model)` counts the calls for a model whose caller went away before the answer ended.
 */
export interface ReceivedRequest {
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: any;
}

export interface MockProviders {
  url: string;
  received: ReceivedRequest[];
  /** Calls for `model` whose connection closed before their answer was complete (the gateway ended them). */
  aborted(model: string): number;
  close(): Promise<void>;
}

export const ANTHROPIC_KEY = "sk-ant-upstream-test";
export const AZURE_KEY = "azure-upstream-test";
/** The usage every Anthropic answer reports (cache reads and writes apart, as Anthropic counts them). */
export const ANTHROPIC_USAGE = { input_tokens: 100, cache_read_input_tokens: 50, cache_creation_input_tokens: 10, output_tokens: 20 };
export const AZURE_USAGE = { prompt_tokens: 30, completion_tokens: 5, total_tokens: 35 };
export const OPENAI_KEY = "sk-openai-upstream-test";
export const OPENAI_RESPONSES_USAGE = {
  input_tokens: 40,
  input_tokens_details: { cached_tokens: 8 },
  output_tokens: 6,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 46,
};

type Event = Record<string, unknown> & { type: string };

function anthropicEvents(model: string): Event[] {
  const start: Event = {
    type: "message_start",
    message: {
      id: "msg_mock_1",
      type: "message",
      role: "assistant",
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: ANTHROPIC_USAGE.input_tokens, cache_read_input_tokens: 50, cache_creation_input_tokens: 10, output_tokens: 1 },
    },
  };
  const text = (index: number, parts: string[]): Event[] => [
    { type: "content_block_start", index, content_block: { type: "text", text: "" } },
    ...parts.map((t) => ({ type: "content_block_delta", index, delta: { type: "text_delta", text: t } })),
    { type: "content_block_stop", index },
  ];
  const end = (stop: string): Event[] => [
    { type: "message_delta", delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: ANTHROPIC_USAGE.output_tokens } },
    { type: "message_stop" },
  ];
  switch (model) {
    case "claude-tools":
      return [
        start,
        { type: "ping" },
        ...text(0, ["Let me look ", "that up."]),
        { type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "toolu_mock_1", name: "get_weather", input: {} } },
        { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "" } },
        { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '{"location": "San Fra' } },
        { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: 'ncisco, CA"}' } },
        { type: "content_block_stop", index: 1 },
        ...end("tool_use"),
      ];
    case "claude-thinking":
      return [
        start,
        { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "" } },
        { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "The user wants a greeting." } },
        { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds" } },
        { type: "content_block_stop", index: 0 },
        ...text(1, ["Hello!"]),
        ...end("end_turn"),
      ];
    case "claude-first-error":
      return [{ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }];
    case "claude-stream-error":
      return [start, ...text(0, ["Partial"]).slice(0, 2), { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }];
    default:
      return [start, { type: "ping" }, ...text(0, ["Hello from ", "mock Claude."]), ...end("end_turn")];
  }
}

/** The non-streamed answer the events add up to (what Anthropic returns without `stream`). */
function anthropicMessage(model: string): Record<string, unknown> {
  const content: Array<Record<string, unknown>> = [];
  for (const e of anthropicEvents(model)) {
    if (e.type === "content_block_start") content.push({ ...(e.content_block as object) });
    if (e.type === "content_block_delta") {
      const block = content[e.index as number]!;
      const d = e.delta as Record<string, string>;
      if (d.type === "text_delta") block.text = String(block.text ?? "") + d.text;
      if (d.type === "thinking_delta") block.thinking = String(block.thinking ?? "") + d.thinking;
      if (d.type === "signature_delta") block.signature = d.signature;
      if (d.type === "input_json_delta") block.partial = String(block.partial ?? "") + d.partial_json;
    }
  }
  for (const b of content) {
    if (b.type === "tool_use") {
      b.input = JSON.parse(String(b.partial));
      delete b.partial;
    }
  }
  const stop = model === "claude-tools" ? "tool_use" : "end_turn";
  return { id: "msg_mock_1", type: "message", role: "assistant", model, content, stop_reason: stop, stop_sequence: null, usage: ANTHROPIC_USAGE };
}

function azureChat(deployment: string, body: any): Record<string, unknown> {
  return {
    id: "chatcmpl-az-1",
    object: "chat.completion",
    created: 1_700_000_000,
    model: "gpt-4o-2024-08-06",
    choices: [{ index: 0, message: { role: "assistant", content: `Hello from Azure deployment ${deployment}.` }, finish_reason: "stop", logprobs: null }],
    usage: AZURE_USAGE,
    prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }],
    echo_max_tokens: body?.max_tokens ?? null,
  };
}

/** OpenAI's Responses API answer, and the events its stream is made of (OpenAI's API reference). */
function openaiResponse(model: string, status: "in_progress" | "completed"): Record<string, unknown> {
  const done = status === "completed";
  return {
    id: "resp_mock_1",
    object: "response",
    created_at: 1_700_000_000,
    status,
    model,
    output: done
      ? [
          {
            type: "message",
            id: "msg_mock_1",
            status: "completed",
            role: "assistant",
            content: [{ type: "output_text", text: "Hello from OpenAI's Responses API.", annotations: [] }],
          },
        ]
      : [],
    usage: done ? OPENAI_RESPONSES_USAGE : null,
    store: true,
  };
}

function openaiResponseEvents(model: string): Event[] {
  const item = { type: "message", id: "msg_mock_1", status: "in_progress", role: "assistant", content: [] };
  const part = { type: "output_text", text: "", annotations: [] };
  const events: Array<Record<string, unknown> & { type: string }> = [
    { type: "response.created", response: openaiResponse(model, "in_progress") },
    { type: "response.in_progress", response: openaiResponse(model, "in_progress") },
    { type: "response.output_item.added", output_index: 0, item },
    { type: "response.content_part.added", item_id: "msg_mock_1", output_index: 0, content_index: 0, part },
    ...["Hello from ", "OpenAI's Responses API."].map((delta) => ({ type: "response.output_text.delta", item_id: "msg_mock_1", output_index: 0, content_index: 0, delta })),
    { type: "response.output_text.done", item_id: "msg_mock_1", output_index: 0, content_index: 0, text: "Hello from OpenAI's Responses API." },
    { type: "response.content_part.done", item_id: "msg_mock_1", output_index: 0, content_index: 0, part: { ...part, text: "Hello from OpenAI's Responses API." } },
    { type: "response.output_item.done", output_index: 0, item: (openaiResponse(model, "completed").output as object[])[0] },
    { type: "response.completed", response: openaiResponse(model, "completed") },
  ];
  return events.map((e, i) => ({ ...e, sequence_number: i }));
}

export async function startMockProviders(): Promise<MockProviders> {
  const received: ReceivedRequest[] = [];
  const aborted = new Map<string, number>();
  const server = http.createServer(async (req, res) => {
    let calledModel = "";
    res.on("close", () => {
      if (!res.writableFinished) aborted.set(calledModel, (aborted.get(calledModel) ?? 0) + 1);
    });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    let body: any = null;
    try {
      body = JSON.parse(text);
    } catch {}
    const url = new URL(req.url ?? "/", "http://mock");
    received.push({ path: url.pathname, query: url.searchParams, headers: req.headers, body });
    calledModel = String(body?.model ?? "");
    const json = (status: number, payload: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(payload));
    };

    if (url.pathname.startsWith("/v1/messages")) {
      if (req.headers["x-api-key"] !== ANTHROPIC_KEY) return json(401, { type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } });
      if (!req.headers["anthropic-version"]) return json(400, { type: "error", error: { type: "invalid_request_error", message: "anthropic-version header is required" } });
      if (url.pathname === "/v1/messages/count_tokens") return json(200, { input_tokens: Math.round(text.length / 10) });
      const model = String(body?.model);
      if (typeof body?.max_tokens !== "number") return json(400, { type: "error", error: { type: "invalid_request_error", message: "max_tokens: Field required" } });
      if (model === "claude-overloaded") return json(529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } });
      if (body.stream !== true) return json(200, anthropicMessage(model));
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
      const events = anthropicEvents(model).map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      // A mid-stream error comes after the start has been delivered (its own write, later), as under real load.
      if (model === "claude-stream-error") {
        res.write(events.slice(0, -1).join(""));
        return void setTimeout(() => res.end(events.at(-1)), 50);
      }
      if (model === "claude-hang") return void res.write(events.slice(0, 4).join(""));
      for (const e of events) res.write(e);
      return res.end();
    }

    if (url.pathname === "/v1/responses") {
      if (req.headers.authorization !== `Bearer ${OPENAI_KEY}`)
        return json(401, { error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } });
      const model = String(body?.model);
      if (body?.stream !== true) return json(200, openaiResponse(model, "completed"));
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
      for (const e of openaiResponseEvents(model)) res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      return res.end();
    }

    const azure = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|completions|embeddings)$/.exec(url.pathname);
    if (azure) {
      if (req.headers["api-key"] !== AZURE_KEY) return json(401, { error: { code: "401", message: "Access denied due to invalid subscription key." } });
      if (!url.searchParams.get("api-version")) return json(404, { error: { code: "404", message: "Resource not found" } });
      const [, deployment, operation] = azure as unknown as [string, string, string];
      if (deployment === "gpt-az-filtered") {
        return json(400, {
          error: {
            message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            type: null,
            param: "prompt",
            code: "content_filter",
            status: 400,
            innererror: { code: "ResponsibleAIPolicyViolation", content_filter_result: { hate: { filtered: true, severity: "high" } } },
          },
        });
      }
      if (operation === "embeddings") {
        // As OpenAI does: base64 of little-endian float32s when asked (the openai SDK asks by default).
        const vector = [0.1, 0.2];
        const embedding = body?.encoding_format === "base64" ? Buffer.from(new Float32Array(vector).buffer).toString("base64") : vector;
        return json(200, { object: "list", data: [{ object: "embedding", index: 0, embedding }], model: "text-embedding-3-small", usage: { prompt_tokens: 4, total_tokens: 4 } });
      }
      if (operation === "completions")
        return json(200, {
          id: "cmpl-az",
          object: "text_completion",
          created: 1,
          model: "gpt-35-turbo-instruct",
          choices: [{ text: "done", index: 0, finish_reason: "stop", logprobs: null }],
          usage: AZURE_USAGE,
        });
      if (body?.stream !== true) return json(200, azureChat(deployment, body));
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (delta: object, finish: string | null) => ({
        id: "chatcmpl-az-1",
        object: "chat.completion.chunk",
        created: 1,
        model: "gpt-4o",
        choices: [{ index: 0, delta, finish_reason: finish }],
      });
      // Azure's first chunk carries only the prompt filter results (no choices), as the real service sends it.
      res.write(
        `data: ${JSON.stringify({ id: "", object: "", created: 0, model: "", choices: [], prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] })}\n\n`,
      );
      for (const part of ["Hello ", "from ", "Azure."]) res.write(`data: ${JSON.stringify(chunk({ content: part }, null))}\n\n`);
      res.write(`data: ${JSON.stringify(chunk({}, "stop"))}\n\n`);
      if (body.stream_options?.include_usage) res.write(`data: ${JSON.stringify({ ...chunk({}, null), choices: [], usage: AZURE_USAGE })}\n\n`);
      res.write("data: [DONE]\n\n");
      return res.end();
    }
    json(404, { error: { message: `no such path ${url.pathname}` } });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    aborted: (model) => aborted.get(model) ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
