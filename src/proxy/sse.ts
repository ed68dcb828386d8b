/**
 * Server-sent events, as the model APIs use them: frames of `event:` and `data:` lines ended by a blank line.
 * The reader takes an upstream stream in chunks cut anywhere (inside a line, inside a UTF-8 character) and hands
 * out whole frames; the writer turns frames back into bytes. Translations between API shapes work on frames,
 * never on bytes.
 */

export interface SseFrame {
  /** The `event:` field; absent for OpenAI's streams, which send data lines only. */
  event?: string | undefined;
  /** The `data:` lines joined by "\n" (the SSE rule); "" for a frame without data. */
  data: string;
}

// SSE allows \n, \r\n and \r as line endings: a frame ends at the first blank line, whichever is used.
const FRAME_END = /\r\n\r\n|\n\n|\r\r/;
/** Larger than any frame a model API sends; past it the upstream is not speaking SSE. */
const MAX_PENDING_CHARS = 16 * 1024 * 1024;

export class SseReader {
  private readonly decoder = new TextDecoder();
  private pending = "";

  /** The frames that this chunk completes (possibly none; a frame's end may come in a later chunk). */
  push(chunk: Uint8Array | string): SseFrame[] {
    this.pending += typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    const frames: SseFrame[] = [];
    for (let m = FRAME_END.exec(this.pending); m !== null; m = FRAME_END.exec(this.pending)) {
      const frame = parseFrame(this.pending.slice(0, m.index));
      if (frame) frames.push(frame);
      this.pending = this.pending.slice(m.index + m[0].length);
    }
    if (this.pending.length > MAX_PENDING_CHARS) throw new Error("an upstream event is larger than 16 MiB: not an event stream");
    return frames;
  }

  /** The stream ended: a last frame without its blank line still counts (some servers end that way). */
  end(): SseFrame[] {
    const rest = this.pending + this.decoder.decode();
    this.pending = "";
    const frame = rest.trim() === "" ? null : parseFrame(rest);
    return frame ? [frame] : [];
  }
}

/** One frame's text (without its blank line), or null when it holds only comments (`: ping`). */
function parseFrame(text: string): SseFrame | null {
  let event: string | undefined;
  let data: string[] | undefined;
  for (const raw of text.split(/\r\n|\n|\r/)) {
    if (raw === "" || raw.startsWith(":")) continue;
    const colon = raw.indexOf(":");
    const field = colon === -1 ? raw : raw.slice(0, colon);
    let value = colon === -1 ? "" : raw.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") {
      data ??= [];
      data.push(value);
    }
  }
  if (event === undefined && data === undefined) return null;
  return { event, data: data?.join("\n") ?? "" };
}

/** A frame as bytes on the wire. */
export function writeFrame(frame: SseFrame): string {
  const data = frame.data.includes("\n") ? frame.data.split("\n").join("\ndata: ") : frame.data;
  return frame.event === undefined ? `data: ${data}\n\n` : `event: ${frame.event}\ndata: ${data}\n\n`;
}

/** An event of Anthropic's or the Responses API's shape: its type names the frame, its JSON is the data. */
export function typedFrame(payload: { type: string; [field: string]: unknown }): string {
  return `event: ${payload.type}\ndata: ${JSON.stringify(payload)}\n\n`;
}

/** A chunk of OpenAI's chat or completions stream. */
export function dataFrame(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

export const DONE_FRAME = "data: [DONE]\n\n";
