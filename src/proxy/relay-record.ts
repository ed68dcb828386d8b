import type { AuthResult } from "../auth/authenticator.js";
import type { ModelDeployment } from "../config/settings.js";
import type { TokenCount } from "../limits/pricing.js";
import type { ClientGone, UpstreamResponse } from "./provider.js";

/**
 * What the relay (relay.ts) and the answer's writer share: the record of a request the relay fills in, the answer it
 * hands over, and the writer's two ways to take it — whole, through an iterator and promises, or straight, as
 * upstream's bytes arrive (straight-attempt.ts).
 */

/** What the relay learns of a request, for its spend log row, its metrics and the upstream call to abort. */
export interface RelayRecord {
  auth: AuthResult | undefined;
  /** The answer began: a failure now is told to the client, never retried. */
  answering: boolean;
  /** The attempts that failed before the one that answered (spend log, headers); empty for most requests. */
  attempts: ReadonlyArray<{ deployment: string; failure: string }>;
  model: string | undefined;
  deployment: ModelDeployment | undefined;
  stream: boolean;
  requestMetadata: unknown;
  usage: TokenCount | undefined;
  cost: number;
  /** performance.now() when the request's first upstream call was made (0 until then). */
  upstreamStartedAt: number;
  /** performance.now() when the answer's last upstream byte was read, and when its last byte was handed to the socket. */
  upstreamEndedAt: number;
  answeredAt: number;
  abort: ClientGone | undefined;
}

/** The answer to write: upstream's body, and what each chunk becomes on its way to the client. */
export interface RelayAnswer {
  status: number;
  contentType: string;
  stream: boolean;
  body: UpstreamResponse["body"];
  /**
   * Where the answer came from (attempts.ts answerHeaders): headers as a flat list of names and values, sent after
   * those given to `setHeader` and before the content type. Also on an error told instead of this answer.
   */
  routing?: readonly string[] | undefined;
  /** What one upstream chunk becomes (metered, translated; possibly "" while a frame or a JSON answer completes); absent: as it is. */
  pass?: ((chunk: Uint8Array | string) => Uint8Array | string) | undefined;
  /** What is sent after the last chunk (held-back frames, a translated answer, the closing events). */
  end?: (() => string) | undefined;
  /**
   * Awaited after the last chunk was read (and `end` made), before the answer is ended: the request's charge is
   * settled in the live ledger by then, so the client's next request is admitted against it.
   */
  beforeEnd?: (() => Promise<void>) | undefined;
}

export interface AnswerWriter {
  /** A header of the answer, or of the error told instead: set now, so an invalid value fails here. */
  setHeader(name: string, value: string): void;
  /** Writes the answer; resolves once it is all sent (or the client left). */
  send(answer: RelayAnswer): Promise<void>;
  /** The same writer for an answer relayed straight, as upstream's bytes arrive (absent: no straight attempt). */
  readonly direct?: DirectWriter | undefined;
}

/**
 * An answer written as a straight attempt (proxy/straight-attempt.ts) receives it from upstream: the same bytes,
 * heads and in-band errors as `AnswerWriter.send`, through calls instead of an iterator and promises.
 */
export interface DirectWriter {
  /** The answer begins: a stream's head is written now, a JSON answer's with its body at the end. */
  begin(status: number, contentType: string, stream: boolean, routing: readonly string[]): void;
  /** The answer's next bytes; false when the client's socket is full: wait for `onDrain` before more. */
  write(bytes: Uint8Array | string): boolean;
  onDrain(resume: () => void): void;
  /** The last bytes (possibly none), and the end. */
  end(last: string): void;
  /**
   * The answer failed after it began: told in-band (a stream's error event) or by closing the connection, true; or
   * false when nothing was sent yet, to be told as an error answer instead.
   */
  broken(err: unknown): boolean;
}

/** Characters of an upstream refusal's body kept for the client's message (relay.ts upstreamFailure), either way. */
export const MAX_ERROR_BODY = 64 * 1024;
