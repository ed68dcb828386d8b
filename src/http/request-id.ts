import { randomUUID } from "node:crypto";

/**
 * A new request id: a UUIDv7 (RFC 9562) — 48 bits of Unix milliseconds, then 74 random bits. Time-ordered, so the
 * spend log's primary key (start_time, request_id) takes each new row at its right edge, and a lookup by request
 * id finds the row by the time the id carries, with no index of its own (store/spend-log-store.ts). `now` is the
 * request's start. Made from randomUUID (Node's pooled, fast v4): its
 * version nibble becomes 7, its variant bits are already RFC 9562's, its first 48 bits become the time.
 */
export function newRequestId(now = Date.now()): string {
  if (now !== prefixMs) {
    const time = now.toString(16).padStart(12, "0");
    prefix = `${time.slice(0, 8)}-${time.slice(8, 12)}-7`;
    prefixMs = now;
  }
  return prefix + randomUUID().slice(15);
}

// The time part of the ids of the current millisecond (several requests share one under load).
let prefixMs = -1;
let prefix = "";
