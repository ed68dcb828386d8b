import type { IncomingHttpHeaders } from "node:http";

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * The bearer token of a request: `Authorization: Bearer …`, or the `x-api-key` header (Anthropic-style clients,
 * as LiteLLM accepts), or the `api-key` header Azure clients send. Only headers: a key in a URL ends up in logs.
 */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const header = headers.authorization;
  if (header) {
    const match = BEARER.exec(header);
    return match ? match[1] : undefined;
  }
  const apiKey = headers["x-api-key"] ?? headers["api-key"];
  return typeof apiKey === "string" && apiKey.length > 0 ? apiKey : undefined;
}
