/**
 * Checkers of event order, as the SDKs rely on it: each returns what a client reassembles from a stream, and
 * throws on the first event out of place (naming it). Used by the translation tests and the stream fuzz test.
 */

type Event = { type?: unknown; [k: string]: unknown };

/** Anthropic's Messages stream: message_start; blocks one after the other, each delta in its open block of the right kind; message_delta; message_stop. */
export function checkAnthropicEvents(events: Event[]) {
  const fail = (i: number, why: string): never => {
    throw new Error(`event ${i} (${String(events[i]?.type)}): ${why}`);
  };
  let started = false;
  let stopped = false;
  let delta: Event | undefined;
  let startUsage: Record<string, number> = {};
  let open: { index: number; type: string } | null = null;
  let nextIndex = 0;
  const blocks: Array<{ type: string; text: string; id?: unknown; name?: unknown }> = [];
  events.forEach((e, i) => {
    if (stopped) fail(i, "after message_stop");
    if (e.type === "ping") return;
    if (!started && e.type !== "message_start") fail(i, "before message_start");
    switch (e.type) {
      case "message_start":
        if (started) fail(i, "twice");
        started = true;
        startUsage = ((e.message as { usage?: Record<string, number> } | undefined)?.usage ?? {}) as Record<string, number>;
        return;
      case "content_block_start": {
        if (open) fail(i, `block ${open.index} still open`);
        if (e.index !== nextIndex) fail(i, `index ${String(e.index)}, expected ${nextIndex}`);
        const block = e.content_block as { type: string; id?: unknown; name?: unknown };
        open = { index: nextIndex++, type: block.type };
        blocks.push({ type: block.type, text: "", id: block.id, name: block.name });
        return;
      }
      case "content_block_delta": {
        if (!open || e.index !== open.index) fail(i, `delta for block ${String(e.index)}, which is not open`);
        const d = e.delta as { type: string; text?: string; thinking?: string; partial_json?: string; signature?: string };
        const fits = { text_delta: "text", thinking_delta: "thinking", signature_delta: "thinking", input_json_delta: "tool_use" }[d.type];
        if (fits !== open!.type) fail(i, `${d.type} in a ${open!.type} block`);
        blocks.at(-1)!.text += d.text ?? d.thinking ?? d.partial_json ?? "";
        return;
      }
      case "content_block_stop":
        if (!open || e.index !== open.index) fail(i, `stop of block ${String(e.index)}, which is not open`);
        open = null;
        return;
      case "message_delta":
        if (open) fail(i, "a block is still open");
        delta = e;
        return;
      case "message_stop":
        if (!delta) fail(i, "no message_delta before it");
        stopped = true;
        return;
      default:
        fail(i, "unknown event type");
    }
  });
  if (!stopped) throw new Error("the stream did not end with message_stop");
  for (const b of blocks) if (b.type === "tool_use") JSON.parse(b.text || "{}");
  // As the SDKs do: message_delta's counts (cumulative) over message_start's.
  const usage = { ...startUsage, ...(delta!.usage as Record<string, number>) };
  return { blocks, stopReason: (delta!.delta as { stop_reason: string }).stop_reason, usage };
}

/** The Responses API's stream: created, in_progress, items one at a time (added, deltas, done), completed or incomplete; sequence numbers 0, 1, 2, … */
export function checkResponsesEvents(events: Event[]) {
  const fail = (i: number, why: string): never => {
    throw new Error(`event ${i} (${String(events[i]?.type)}): ${why}`);
  };
  let open: { index: number; type: string; id: unknown; text: string } | null = null;
  const items: Array<Record<string, unknown>> = [];
  let final: Record<string, unknown> | undefined;
  events.forEach((e, i) => {
    if (e.sequence_number !== i) fail(i, `sequence_number ${String(e.sequence_number)}`);
    if (final) fail(i, "after the final event");
    if (i === 0 && e.type !== "response.created") fail(i, "the first event is not response.created");
    if (i === 1 && e.type !== "response.in_progress") fail(i, "the second event is not response.in_progress");
    const t = String(e.type);
    if (t === "response.created" || t === "response.in_progress") return;
    if (t === "response.output_item.added") {
      if (open) fail(i, "an item is still open");
      if (e.output_index !== items.length) fail(i, `output_index ${String(e.output_index)}`);
      const item = e.item as { type: string; id: unknown };
      open = { index: items.length, type: item.type, id: item.id, text: "" };
      return;
    }
    if (t === "response.output_item.done") {
      if (!open || e.output_index !== open.index) fail(i, "no such open item");
      items.push(e.item as Record<string, unknown>);
      open = null;
      return;
    }
    if (t === "response.completed" || t === "response.incomplete") {
      if (open) fail(i, "an item is still open");
      final = (e.response as Record<string, unknown>) ?? fail(i, "no response");
      return;
    }
    if (!open || e.item_id !== open.id) fail(i, "names no open item");
    const fits: Record<string, string> = {
      "response.content_part.added": "message",
      "response.output_text.delta": "message",
      "response.output_text.done": "message",
      "response.content_part.done": "message",
      "response.function_call_arguments.delta": "function_call",
      "response.function_call_arguments.done": "function_call",
      "response.reasoning_summary_part.added": "reasoning",
      "response.reasoning_summary_text.delta": "reasoning",
      "response.reasoning_summary_text.done": "reasoning",
      "response.reasoning_summary_part.done": "reasoning",
    };
    if (fits[t] === undefined) fail(i, "unknown event type");
    if (fits[t] !== open!.type) fail(i, `in a ${open!.type} item`);
    if (t.endsWith(".delta")) open!.text += String(e.delta);
    if (t === "response.output_text.done" && e.text !== open!.text) fail(i, "its text is not the deltas joined");
    if (t === "response.function_call_arguments.done" && e.arguments !== open!.text) fail(i, "its arguments are not the deltas joined");
  });
  if (!final) throw new Error("the stream did not end with response.completed or response.incomplete");
  if (JSON.stringify(final.output) !== JSON.stringify(items)) throw new Error("the final response's output is not the items streamed");
  return { items, response: final };
}
