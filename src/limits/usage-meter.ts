import { tokensFromAnthropicUsage, tokensFromResponsesUsage, tokensFromUsage, type TokenCount } from "./pricing.js";

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

/** Reads one API shape's `usage` object. */
export type UsageReader = (usage: unknown) => TokenCount | undefined;

/** A JSON answer's meter: OpenAI's shapes by default; `tokensFromAnthropicUsage` or `tokensFromResponsesUsage` for theirs. */
export function jsonUsageMeter(read: UsageReader = tokensFromUsage): UsageMeter {
  return new JsonUsageMeter(read);
}

// A class, not an object literal of closures with a getter: one is made per metered request, and the literal
// cost more to make than the meter costs to run (docs/performance.md).
class JsonUsageMeter implements UsageMeter {
  private readonly parts: Array<Uint8Array | string> = [];
  private bytes = 0;
  usage: TokenCount | undefined = undefined;

  constructor(private readonly read: UsageReader) {}

  // Arrow properties: the relay hands `pass` and `end` on as functions (RelayAnswer).
  readonly pass = (chunk: Uint8Array | string): Uint8Array | string => {
    // Only references are kept; nothing is copied unless the tail does not hold the usage.
    if (this.bytes <= MAX_JSON_BYTES) {
      this.parts.push(chunk);
      this.bytes += chunk.length;
    }
    return chunk;
  };

  readonly end = (): string => {
    if (this.bytes <= MAX_JSON_BYTES) this.usage = usageFromTail(this.parts, this.read) ?? usageFromWhole(this.parts, this.read);
    return "";
  };
}

// OpenAI-compatible servers write `usage` last: the answer's last few KiB hold it, and reading only those
// costs the same for a 100-byte answer and a 100 KiB one. Anything else falls back to parsing the whole answer.
const TAIL_BYTES = 4096;

/** The `usage` object found in the answer's last bytes, or undefined when the tail does not hold a readable one. */
export function usageFromTail(parts: ReadonlyArray<Uint8Array | string>, read: UsageReader = tokensFromUsage): TokenCount | undefined {
  const last = parts[parts.length - 1];
  if (last === undefined) return undefined;
  // The usual answer: its last chunk alone is the tail (the only chunk, or one at least TAIL_BYTES long), searched
  // where it is. Otherwise the last chunks that make up TAIL_BYTES are joined first.
  const lastBytes = bytesOf(last);
  if (parts.length === 1 || lastBytes.length >= TAIL_BYTES) return usageFromBytes(lastBytes, read);
  const tail = [lastBytes];
  let size = lastBytes.length;
  for (let i = parts.length - 2; i >= 0 && size < TAIL_BYTES; i--) {
    const part = bytesOf(parts[i]!);
    tail.push(part);
    size += part.length;
  }
  return usageFromBytes(Buffer.concat(tail.reverse(), size), read);
}

/**
 * The last `usage` object in `bytes`. Searched as bytes: a multi-byte character cut at a chunk's edge cannot shift
 * what follows (the usage object itself is ASCII, and no byte of a multi-byte UTF-8 character is a brace); what
 * follows the name is read as latin1 text, a character for each byte.
 */
function usageFromBytes(bytes: Buffer, read: UsageReader): TokenCount | undefined {
  const at = bytes.lastIndexOf(USAGE_BYTES);
  return at === -1 ? undefined : usageObjectAt(bytes.toString("latin1", at), 0, read);
}

/**
 * The object that follows the name `"usage"` found at `at` in `text` (at its opening quote), read; undefined when
 * there is none before `to` (the end of the text by default).
 */
function usageObjectAt(text: string, at: number, read: UsageReader, to = text.length): TokenCount | undefined {
  let i = skipSpace(text, at + USAGE_BYTES.length, to);
  if (text.charCodeAt(i) !== COLON) return undefined;
  i = skipSpace(text, i + 1, to);
  if (text.charCodeAt(i) !== OPEN_BRACE) return undefined;
  // The usage object holds numbers and nested objects of numbers (its keys are plain names): its braces can be
  // counted without parsing strings. Brace to brace, by V8's search, rather than a character at a time.
  let depth = 1;
  let j = i + 1;
  let open = text.indexOf("{", j);
  while (j < to) {
    const close = text.indexOf("}", j);
    if (close === -1 || close >= to) return undefined;
    if (open !== -1 && open < close) {
      depth++;
      j = open + 1;
      open = text.indexOf("{", j);
      continue;
    }
    j = close + 1;
    if (--depth === 0) {
      try {
        return read(JSON.parse(text.slice(i, j)));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

const bytesOf = (part: Uint8Array | string): Buffer =>
  typeof part === "string" ? Buffer.from(part) : Buffer.isBuffer(part) ? part : Buffer.from(part.buffer, part.byteOffset, part.byteLength);

/** The first index from `from` that is not JSON white space; `to` when there is none before it. */
function skipSpace(text: string, from: number, to = text.length): number {
  let i = from;
  for (let c = text.charCodeAt(i); i < to && (c === 0x20 || c === LF || c === CR || c === 0x09); c = text.charCodeAt(++i));
  return i;
}

const COLON = 0x3a;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;

function usageFromWhole(parts: ReadonlyArray<Uint8Array | string>, read: UsageReader): TokenCount | undefined {
  try {
    const text = parts.map((p) => (typeof p === "string" ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString("utf8"))).join("");
    return read((JSON.parse(text) as { usage?: unknown }).usage);
  } catch {
    return undefined;
  }
}

/**
 * OpenAI's chat and completions streams. The usage chunk (empty `choices`) is dropped, and `usage` left out of a
 * chunk that has choices, unless the client asked for it.
 */
export function sseUsageMeter(clientAskedForUsage: boolean): UsageMeter {
  const frame: FrameReader = (text, found) => {
    const data = dataOf(text);
    if (data === undefined) return text;
    // The usual usage frame, which the client did not ask for: a chunk with empty `choices` and the usage object,
    // each named once. Its usage is read from that object alone and the frame dropped, without parsing the chunk.
    if (!clientAskedForUsage) {
      const usage = usageOnlyIn(data, 0, data.length);
      if (usage !== undefined) {
        found(usage);
        return "";
      }
    }
    let parsed: { usage?: unknown; choices?: unknown[] };
    try {
      parsed = JSON.parse(data);
    } catch {
      return text;
    }
    const usage = tokensFromUsage(parsed.usage);
    if (usage) found(usage);
    if (clientAskedForUsage || parsed.usage == null) return text;
    if (!Array.isArray(parsed.choices) || parsed.choices.length === 0) return ""; // the usage-only chunk
    delete parsed.usage;
    return `data: ${JSON.stringify(parsed)}`;
  };
  return new FrameMeter(frame, false, clientAskedForUsage ? null : usageOnlyIn);
}

/**
 * The usage of a chunk that is only a usage report — `"choices":[]` and a `"usage"` object, each named once — or
 * undefined for any other chunk (read by parsing it whole, as before). The chunk's JSON is `text` from `from` to
 * `to`. What it answers is what parsing the chunk would: a key named once is that key, and its object of numbers is
 * read as a JSON answer's tail is (usageFromBytes). The names are searched in the text as it is: the bytes of a
 * frame read as latin1 (FrameMeter's pass) answer as the frame decoded does, the names and numbers being ASCII.
 */
function usageOnlyIn(text: string, from: number, to: number): TokenCount | undefined {
  const usageAt = quotedIn(text, 'usage"', from, to);
  if (usageAt === -1 || quotedIn(text, 'usage"', usageAt + 1, to) !== -1) return undefined;
  const choicesAt = quotedIn(text, 'choices"', from, to);
  if (choicesAt === -1 || quotedIn(text, 'choices"', choicesAt + 1, to) !== -1 || !emptyListAfter(text, choicesAt + CHOICES_NAME_LENGTH, to)) return undefined;
  return usageObjectAt(text, usageAt, tokensFromUsage, to);
}

const CHOICES_NAME_LENGTH = '"choices"'.length;

/** `text` at `at` is `: []` (JSON white space anywhere between), before `to`. */
function emptyListAfter(text: string, at: number, to: number): boolean {
  let i = skipSpace(text, at, to);
  if (text.charCodeAt(i) !== COLON) return false;
  i = skipSpace(text, i + 1, to);
  if (text.charCodeAt(i) !== OPEN_BRACKET) return false;
  i = skipSpace(text, i + 1, to);
  return i < to && text.charCodeAt(i) === CLOSE_BRACKET;
}

/**
 * Anthropic's Messages stream, relayed unchanged: `message_start` reports the prompt (cache tokens apart), each
 * `message_delta` the output so far (cumulative; newer API versions repeat the prompt counts there too).
 */
export function anthropicSseUsageMeter(): UsageMeter {
  const reported: Record<string, unknown> = {};
  return new FrameMeter((text, found) => {
    const data = dataOf(text);
    if (data === undefined) return text;
    try {
      const event = JSON.parse(data) as { type?: unknown; message?: { usage?: unknown }; usage?: unknown };
      const usage = event.type === "message_start" ? event.message?.usage : event.type === "message_delta" ? event.usage : undefined;
      if (usage && typeof usage === "object") {
        for (const [k, v] of Object.entries(usage)) if (v !== null && v !== undefined) reported[k] = v;
        const tokens = tokensFromAnthropicUsage(reported);
        if (tokens) found(tokens);
      }
    } catch {
      // A frame that is not JSON reports nothing.
    }
    return text;
  }, true);
}

/** The Responses API's stream, relayed unchanged: the final event (`response.completed`, or incomplete/failed) carries `response.usage`. */
export function responsesSseUsageMeter(): UsageMeter {
  return new FrameMeter((text, found) => {
    const data = dataOf(text);
    if (data === undefined) return text;
    try {
      const tokens = tokensFromResponsesUsage((JSON.parse(data) as { response?: { usage?: unknown } }).response?.usage);
      if (tokens) found(tokens);
    } catch {}
    return text;
  }, true);
}

const USAGE_BYTES = Buffer.from('"usage"');
const QUOTE = 0x22;

/**
 * Whether a frame reports usage: it names `"usage"`, and not only as null. OpenAI names it in every chunk of a
 * stream that asked for usage, as `"usage":null` until the last; such a frame reports nothing, and every reader
 * leaves it as it is (a parsed chunk whose usage is null is relayed as it came), so it is not parsed at all.
 */
function reportsUsage(frame: string): boolean {
  const at = textIndexOfQuoted(frame, 'usage"', 0);
  return at !== -1 && (!namesNullAt(frame, at) || textIndexOfQuoted(frame, 'usage"', at + 1) !== -1);
}

/**
 * `"usage"` at `at` in `text` is followed by `: null` (white space around the colon allowed), before `to`. What
 * follows `null` is not looked at: anything but JSON's `,` `}` or white space makes the chunk unparseable, and an
 * unparseable chunk is relayed as it came, reporting nothing, as a null usage is.
 */
function namesNullAt(text: string, at: number, to = text.length): boolean {
  let i = skipSpace(text, at + USAGE_BYTES.length, to);
  if (text.charCodeAt(i) !== COLON) return false;
  i = skipSpace(text, i + 1, to);
  return i + 4 <= to && text.startsWith("null", i);
}

/**
 * Where `"name"` is in `text`, its opening quote after `from`; -1 when it is not. Searched as `name"`, the quote
 * before it checked after: a needle that opens with a quote is tried at every quote of the text, and JSON is full of
 * them (searching a streamed chunk for `"usage"` cost three to seven times what searching it for `usage"` does).
 */
function textIndexOfQuoted(text: string, nameAndQuote: string, from: number): number {
  for (let at = text.indexOf(nameAndQuote, from + 1); at !== -1; at = text.indexOf(nameAndQuote, at + 1)) {
    if (text.charCodeAt(at - 1) === QUOTE) return at - 1;
  }
  return -1;
}

/** textIndexOfQuoted within `text` from `from` (its opening quote there or after) to `to`. */
function quotedIn(text: string, nameAndQuote: string, from: number, to: number): number {
  const at = textIndexOfQuoted(text, nameAndQuote, from);
  return at !== -1 && at + 1 + nameAndQuote.length <= to ? at : -1;
}

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;
const endsWithBlankLine = (chunk: Uint8Array) => chunk.length >= 2 && chunk[chunk.length - 1] === LF && chunk[chunk.length - 2] === LF;

const toLf = (text: string) => (text.indexOf("\r") === -1 ? text : text.replace(/\r\n?/g, "\n"));

/** The data of a frame's (single) `data:` line, or undefined for a frame without one. */
function dataOf(text: string): string | undefined {
  const at = text.startsWith("data:") ? 0 : text.indexOf("\ndata:");
  if (at === -1) return undefined;
  const from = at === 0 ? 5 : at + 6;
  const start = text[from] === " " ? from + 1 : from;
  const end = text.indexOf("\n", start);
  return text.slice(start, end === -1 ? undefined : end);
}

/** What a stream's meter does with one frame that mentions usage (FrameMeter). */
type FrameReader = (text: string, found: (usage: TokenCount) => void) => string;

/**
 * Splits a stream into frames and hands each one that mentions usage to `frame`, its line endings made "\n".
 * `asIs`: the stream is relayed untouched (no copy, no re-encoding; `frame`'s answer is not used) and only read.
 * Otherwise the frames are what is relayed: `frame` may keep, change or drop its frame ("" drops it), and the
 * others pass as they are. Nothing is held back beyond the frame being completed. A class, not an object literal
 * of closures with a getter: one is made per streamed request (as JsonUsageMeter).
 */
class FrameMeter implements UsageMeter {
  usage: TokenCount | undefined = undefined;
  // Made when a chunk is first read as text: most streams' chunks pass as bytes (their last frame is decoded alone).
  private decoder: InstanceType<typeof TextDecoder> | null = null;
  // SSE allows \n, \r\n and \r as line endings: a frame ends at the first blank line, whichever is used. Made on
  // first use, one per stream: its lastIndex is this stream's place.
  private frameEnd: RegExp | null = null;
  private pending = "";
  // True while everything passed so far ended with a blank line: no partial frame, no partial character held.
  private atFrameEdge = true;

  constructor(
    private readonly frame: FrameReader,
    private readonly asIs = false,
    /** Reads a usage-only chunk's JSON (text, from, to) and drops its frame; null when such frames are kept (usageOnlyIn). */
    private readonly usageOnly: ((text: string, from: number, to: number) => TokenCount | undefined) | null = null,
  ) {}

  private readonly found = (u: TokenCount): void => {
    this.usage = u;
  };

  /**
   * The one frame of a chunk that mentions usage, from `start` to the blank line at `end` (`text` is the chunk read
   * as latin1): what goes on in its place. The usual one — a single `data:` line, usage named once, and a usage-only
   * chunk the client did not ask for — is read where it is, in `text` (usageOnly); any other is decoded and read.
   */
  private usageFrame(bytes: Buffer, text: string, start: number, end: number, usageNamedOnce: boolean): string {
    const usageOnly = this.usageOnly;
    if (usageOnly !== null && usageNamedOnce && text.startsWith("data:", start) && text.indexOf("\n", start) === end) {
      const usage = usageOnly(text, text.charCodeAt(start + 5) === SPACE ? start + 6 : start + 5, end);
      if (usage !== undefined) {
        this.usage = usage;
        return "";
      }
    }
    return this.one(bytes.toString("utf8", start, end));
  }

  /** One whole frame: what goes on in its place ("" for none). */
  private one(raw: string): string {
    if (this.asIs) {
      if (reportsUsage(raw)) this.frame(toLf(raw), this.found);
      return "";
    }
    const text = toLf(raw);
    return reportsUsage(text) ? this.frame(text, this.found) : text;
  }

  /** Reads `chunk` frame by frame, as text: what goes on in its place (the frames kept, each changed or not). */
  private readFrames(chunk: Uint8Array | string): string {
    if (typeof chunk === "string") this.pending += chunk;
    else {
      if (this.decoder === null) this.decoder = new TextDecoder();
      this.pending += this.decoder.decode(chunk, { stream: true });
    }
    if (this.frameEnd === null) this.frameEnd = /\r\n\r\n|\n\n|\r\r/g;
    const frameEnd = this.frameEnd;
    const pending = this.pending;
    let out = "";
    let from = 0;
    frameEnd.lastIndex = 0;
    for (let m = frameEnd.exec(pending); m !== null; m = frameEnd.exec(pending)) {
      const kept = this.one(pending.slice(from, m.index));
      if (kept) out += `${kept}\n\n`;
      from = frameEnd.lastIndex;
    }
    if (from > 0) this.pending = pending.slice(from);
    this.atFrameEdge = this.pending === "" && (typeof chunk === "string" ? chunk.endsWith("\n\n") : endsWithBlankLine(chunk));
    return out;
  }

  // Arrow properties: the relay hands `pass` and `end` on as functions (RelayAnswer).
  readonly pass = (chunk: Uint8Array | string): Uint8Array | string => {
    // Most upstream chunks are whole frames (a chunk per token), and only the last frame mentions usage: frames
    // before it pass as the bytes they are, unread and not decoded; only it and what follows are read as text.
    // Frames with "\r" line endings are all read (made "\n").
    if (this.atFrameEdge && typeof chunk !== "string" && endsWithBlankLine(chunk)) {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      // Searched as latin1 text, a character for each byte (its offsets are the bytes'): one copy, then V8's own
      // string search, where each search of the Buffer was a call into C++ — six of them were about half of what
      // metering a stream's last chunk cost. What is searched for is ASCII, and no byte of a multi-byte UTF-8
      // character is ASCII, so a match is where it is in the bytes.
      const text = bytes.toString("latin1");
      if (text.indexOf("\r") === -1) {
        // Frames that name usage only as null (OpenAI's every chunk, once a stream asked for usage) pass unread.
        let usageAt = textIndexOfQuoted(text, 'usage"', 0);
        let end = -1;
        let next = -1;
        while (usageAt !== -1) {
          end = text.indexOf("\n\n", usageAt);
          next = textIndexOfQuoted(text, 'usage"', usageAt + 1);
          if ((next !== -1 && next < end) || !namesNullAt(text, usageAt, end)) break;
          usageAt = next;
        }
        if (usageAt === -1) return chunk;
        const blank = text.lastIndexOf("\n\n", usageAt);
        const start = blank === -1 ? 0 : blank + 2;
        // The usual last chunk: the frames before the usage frame, it, and frames that do not mention usage
        // (`[DONE]`). Only the usage frame is read; the others pass as the bytes they are.
        if (next === -1 || (next < end && textIndexOfQuoted(text, 'usage"', end) === -1)) {
          const kept = this.usageFrame(bytes, text, start, end, next === -1);
          if (this.asIs) return chunk;
          const head = bytes.subarray(0, start);
          const tail = bytes.subarray(end + 2);
          if (kept !== "") return Buffer.concat([head, Buffer.from(`${kept}\n\n`), tail]);
          // The frame dropped (the usage chunk the client did not ask for): what is around it, copied only if both sides hold bytes.
          return tail.length === 0 ? (head.length === 0 ? "" : head) : head.length === 0 ? tail : Buffer.concat([head, tail]);
        }
        // More than one frame mentions usage (rare): read frame by frame, below.
      }
    }
    const out = this.readFrames(chunk);
    return this.asIs ? chunk : out;
  };

  readonly end = (): string => {
    const rest = this.decoder === null ? this.pending : this.pending + this.decoder.decode();
    this.pending = "";
    return rest ? this.one(rest) : "";
  };
}
