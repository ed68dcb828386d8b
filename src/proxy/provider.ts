import type { ModelDeployment } from "../config/settings.js";

import { EventEmitter } from "node:events";

/**
 * "The client went away": an abort signal undici accepts (an EventEmitter with `aborted` and an "abort" event),
 * at a fraction of an AbortController's cost, made once per proxied request.
 */
export class ClientGone extends EventEmitter {
  aborted = false;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit("abort");
  }
}

export type Endpoint = "chat.completions" | "completions" | "embeddings";

export interface UpstreamCall {
  endpoint: Endpoint;
  deployment: ModelDeployment;
  /** The client's body with `model` already set to the upstream model name. */
  body: Record<string, unknown>;
  /** The client's bytes, when `body` is exactly what the client sent: forwarded as they are. */
  rawBody?: Buffer | undefined;
  stream: boolean;
  /** Aborted when the client goes away, so the upstream call stops too. */
  signal: ClientGone;
}

export interface UpstreamResponse {
  status: number;
  contentType: string;
  /** Upstream's Retry-After, relayed with a 429. */
  retryAfter?: string | undefined;
  /** Bytes as they arrive; for streams, SSE frames relayed to the client one by one. */
  body: AsyncIterable<Uint8Array | string> | Iterable<string>;
}

export interface Provider {
  forward(call: UpstreamCall): Promise<UpstreamResponse>;
}
