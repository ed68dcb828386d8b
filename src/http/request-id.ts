import { randomUUID } from "node:crypto";

/**
 * A new request id: a UUIDv7 (RFC 9562) — 48 bits of Unix milliseconds, then 74 random bits. Time-ordered, so the
 * spend log's indexes on request_id take each new id at their right edge instead of at a random page (a random
 * UUIDv4 cost Postgres about a quarter more CPU per row). Made from randomUUID (Node's pooled, fast v4): its
 * version nibble becomes 7, its variant bits are already RFC 9562's, its first 48 bits become the time.
 */
export function newRequestId(now = Date.now()): string {
  const random = randomUUID();
  const time = now.toString(16).padStart(12, "0");
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`;
}
