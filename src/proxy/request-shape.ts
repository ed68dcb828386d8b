import { BadRequestError } from "../errors/errors.js";
import type { Endpoint } from "./provider.js";

/**
 * Enough of OpenAI's request validation to refuse what OpenAI refuses before a lenient upstream answers it,
 * with `param` naming the field. Unknown fields pass untouched: newer upstreams accept fields this gateway has
 * never heard of. Cheap: a few type checks per request, nothing walks a whole prompt.
 */
export function assertRequestShape(endpoint: Endpoint, request: Record<string, unknown>): void {
  if (endpoint === "chat.completions") {
    const messages = request.messages;
    if (!Array.isArray(messages)) throw new BadRequestError("'messages' is required and must be an array of messages", { code: "invalid_type", param: "messages" });
    if (messages.length === 0) throw new BadRequestError("'messages' must contain at least one message", { code: "empty_array", param: "messages" });
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as { role?: unknown; content?: unknown } | null;
      if (m === null || typeof m !== "object" || Array.isArray(m)) throw new BadRequestError(`messages[${i}] must be an object`, { code: "invalid_type", param: `messages[${i}]` });
      if (typeof m.role !== "string" || m.role.length === 0)
        throw new BadRequestError(`messages[${i}].role is required and must be a string`, { code: "invalid_type", param: `messages[${i}].role` });
      if (m.content !== undefined && m.content !== null && typeof m.content !== "string" && !Array.isArray(m.content)) {
        throw new BadRequestError(`messages[${i}].content must be a string, an array of content parts, or null`, { code: "invalid_type", param: `messages[${i}].content` });
      }
    }
  } else if (endpoint === "completions") {
    const prompt = request.prompt;
    if (typeof prompt !== "string" && !Array.isArray(prompt))
      throw new BadRequestError("'prompt' is required and must be a string or an array", { code: "invalid_type", param: "prompt" });
  } else {
    const input = request.input;
    if (typeof input !== "string" && !Array.isArray(input))
      throw new BadRequestError("'input' is required and must be a string or an array", { code: "invalid_type", param: "input" });
    if ((typeof input === "string" || Array.isArray(input)) && input.length === 0) throw new BadRequestError("'input' must not be empty", { code: "empty_input", param: "input" });
  }
  for (const field of ["max_tokens", "max_completion_tokens", "n"] as const) {
    const v = request[field];
    if (v !== undefined && v !== null && (typeof v !== "number" || !Number.isInteger(v) || v < 1))
      throw new BadRequestError(`'${field}' must be a positive integer`, { code: "invalid_type", param: field });
  }
  for (const field of ["temperature", "top_p"] as const) {
    const v = request[field];
    if (v !== undefined && v !== null && (typeof v !== "number" || !Number.isFinite(v)))
      throw new BadRequestError(`'${field}' must be a number`, { code: "invalid_type", param: field });
  }
}

/**
 * The first top-level key that appears twice in a JSON object's bytes, or null. `JSON.parse` keeps the last
 * of duplicate keys, while an upstream parser may keep the first: `{"model":"expensive","model":"allowed"}`
 * would be authorised and priced as one model and served as the other. Such bodies are refused. A key written
 * with escapes ("mod\u0065l") is compared decoded.
 *
 * `distinctKeys`: how many keys the parsed object has, when the caller has it. JSON.parse makes one property of
 * each name, so the bytes name more keys than that exactly when one repeats: the usual body is then only counted,
 * one pass over its bytes with nothing made, and its keys are read as text only when the counts differ.
 */
export function duplicateTopLevelKey(raw: Buffer, distinctKeys = -1): string | null {
  if (distinctKeys >= 0 && eachTopLevelKey(raw, null) === distinctKeys) return null;
  const seen = new Set<string>();
  let duplicate: string | null = null;
  eachTopLevelKey(raw, (start, end, escaped) => {
    const text = raw.toString("utf8", start, end + 1);
    const key = escaped ? (JSON.parse(text) as string) : text.slice(1, -1);
    if (seen.has(key)) {
      duplicate = key;
      return false;
    }
    seen.add(key);
    return true;
  });
  return duplicate;
}

/**
 * The top-level keys of a JSON object's bytes, in order: each handed to `visit` (its quotes' offsets, and whether
 * it holds an escape) until `visit` answers false; how many were passed (all of them, unless `visit` stopped the
 * walk). One pass over the bytes.
 */
function eachTopLevelKey(raw: Buffer, visit: ((start: number, end: number, escaped: boolean) => boolean) | null): number {
  let count = 0;
  let depth = 0;
  let i = 0;
  const n = raw.length;
  while (i < n) {
    const c = raw[i]!;
    if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      i++;
      while (i < n && raw[i] !== 0x22) {
        if (raw[i] === 0x5c /* \ */) {
          escaped = true;
          i++;
        }
        i++;
      }
      const end = i; // the closing quote
      i++;
      if (depth !== 1) continue;
      let j = i;
      while (j < n && (raw[j] === 0x20 || raw[j] === 0x0a || raw[j] === 0x0d || raw[j] === 0x09)) j++;
      if (raw[j] !== 0x3a /* : */) continue;
      count++;
      if (visit !== null && !visit(start, end, escaped)) return count;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) depth++;
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth--;
    i++;
  }
  return count;
}
