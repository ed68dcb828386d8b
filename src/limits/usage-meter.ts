import { tokensFromUsage, type TokenCount } from "./pricing.js";

// A JSON answer longer than this is relayed without its usage read (it is charged its reservation).
const MAX_JSON_BYTES = 8 * 1024 * 1024;

/**
 * Reads the token usage out of an upstream answer while it is relayed, without delaying any byte.
 *
 * - JSON answers: the bytes are kept (up to a cap) and `usage` is read once the answer is complete.
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
  const parts: Buffer[] = [];
  let bytes = 0;
  let usage: TokenCount | undefined;
  return {
    pass(chunk) {
      if (bytes <= MAX_JSON_BYTES) {
        const b = typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        parts.push(b);
        bytes += b.length;
      }
      return chunk;
    },
    end() {
      if (bytes <= MAX_JSON_BYTES) {
        try {
          usage = tokensFromUsage((JSON.parse(Buffer.concat(parts).toString("utf8")) as { usage?: unknown }).usage);
        } catch {
          usage = undefined;
        }
      }
      return "";
    },
    get usage() {
      return usage;
    },
  };
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
