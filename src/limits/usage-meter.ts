import { tokensFromUsage, type TokenCount } from "./pricing.js";

// A JSON answer longer than this is relayed without its usage read (it is charged its reservation).
const MAX_JSON_BYTES = 8 * 1024 * 1024;

/**
 * Reads the token usage out of an upstream answer while it is relayed, without delaying any byte.
 *
 * - JSON answers: the chunks are kept (up to a cap) and `usage` is read once the answer is complete, from its
 *   last few KiB where it is (OpenAI writes it last), from the whole answer otherwise.
 * - SSE streams: frames are split on the blank line; a frame that carries `usage` is parsed. Gatehouse
 *   asks upstream for the usage chunk (`stream_options.include_usage`); a client that did not ask for it
 *   does not get it (OpenAI's contract: the chunk with empty `choices` comes only on request).
 */
export interface UsageMeter {
  /** Bytes to send on for one upstream chunk (possibly fewer, possibly held back until a frame completes). */
  pass(chunk: Uint8Array | string): Uint8Array | string;
  /** What is still held back when the upstream ends. */
  end(): string;
  /** The usage reported, once the answer has ended; undefined when upstream did not report it. */
  readonly usage: TokenCount | undefined;
}

export function jsonUsageMeter(): UsageMeter {
  const parts: Array<Uint8Array | string> = [];
  let bytes = 0;
  let usage: TokenCount | undefined;
  return {
    pass(chunk) {
      // Only references are kept; nothing is copied unless the tail does not hold the usage.
      if (bytes <= MAX_JSON_BYTES) {
        parts.push(chunk);
        bytes += chunk.length;
      }
      return chunk;
    },
    end() {
      if (bytes <= MAX_JSON_BYTES) usage = usageFromTail(parts) ?? usageFromWhole(parts);
      return "";
    },
    get usage() {
      return usage;
    },
  };
}

// OpenAI-compatible servers write `usage` last: the answer's last few KiB hold it, and reading only those
// costs the same for a 100-byte answer and a 100 KiB one. Anything else falls back to parsing the whole answer.
const TAIL_BYTES = 4096;

/** The `usage` object found in the answer's last bytes, or undefined when the tail does not hold a readable one. */
export function usageFromTail(parts: ReadonlyArray<Uint8Array | string>): TokenCount | undefined {
  let tail = "";
  for (let i = parts.length - 1; i >= 0 && tail.length < TAIL_BYTES; i--) {
    const part = parts[i]!;
    // latin1 maps byte for byte: a multi-byte character cut at the edge cannot shift what follows, and the
    // usage object itself is ASCII.
    tail = (typeof part === "string" ? part : Buffer.from(part.buffer, part.byteOffset, part.byteLength).toString("latin1")) + tail;
  }
  const at = tail.lastIndexOf('"usage"');
  if (at === -1) return undefined;
  let i = at + 7;
  while (i < tail.length && (tail[i] === " " || tail[i] === "\n" || tail[i] === "\r" || tail[i] === "\t")) i++;
  if (tail[i] !== ":") return undefined;
  i++;
  while (i < tail.length && (tail[i] === " " || tail[i] === "\n" || tail[i] === "\r" || tail[i] === "\t")) i++;
  if (tail[i] !== "{") return undefined;
  // The usage object holds numbers and nested objects of numbers (its keys are plain names): its braces can be
  // counted without parsing strings.
  let depth = 0;
  for (let j = i; j < tail.length; j++) {
    const c = tail[j];
    if (c === "{") depth++;
    else if (c === "}" && --depth === 0) {
      try {
        return tokensFromUsage(JSON.parse(tail.slice(i, j + 1)));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function usageFromWhole(parts: ReadonlyArray<Uint8Array | string>): TokenCount | undefined {
  try {
    const text = parts.map((p) => (typeof p === "string" ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString("utf8"))).join("");
    return tokensFromUsage((JSON.parse(text) as { usage?: unknown }).usage);
  } catch {
    return undefined;
  }
}

export function sseUsageMeter(clientAskedForUsage: boolean): UsageMeter {
  const decoder = new TextDecoder();
  let pending = "";
  let usage: TokenCount | undefined;

  const FRAME_END = /\r\n\r\n|\n\n|\r\r/;
  const frame = (text: string): string => {
    if (!text.includes('"usage"')) return text;
    const data = text.startsWith("data: ") ? text.slice(6) : text.startsWith("data:") ? text.slice(5) : undefined;
    if (data === undefined) return text;
    let parsed: { usage?: unknown; choices?: unknown[] };
    try {
      parsed = JSON.parse(data);
    } catch {
      return text;
    }
    const found = tokensFromUsage(parsed.usage);
    if (found) usage = found;
    if (clientAskedForUsage || parsed.usage == null) return text;
    if (!Array.isArray(parsed.choices) || parsed.choices.length === 0) return ""; // the usage-only chunk
    delete parsed.usage;
    return `data: ${JSON.stringify(parsed)}`;
  };

  return {
    pass(chunk) {
      pending += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      let out = "";
      // SSE allows \n, \r\n and \r as line endings: a frame ends at the first blank line, whichever is used.
      for (let m = FRAME_END.exec(pending); m !== null; m = FRAME_END.exec(pending)) {
        const kept = frame(pending.slice(0, m.index).replace(/\r\n?/g, "\n"));
        if (kept) out += `${kept}\n\n`;
        pending = pending.slice(m.index + m[0].length);
      }
      return out;
    },
    end() {
      const rest = pending + decoder.decode();
      pending = "";
      return rest ? frame(rest) : "";
    },
    get usage() {
      return usage;
    },
  };
}
