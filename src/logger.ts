import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Paths redacted in every log line. Keys, the master key and upstream secrets must never reach a log
 * (DEVELOPERS.md, Standards); the request logger only ever logs `key_name` (sk-...abcd).
 */
export const REDACT_PATHS = [
  "authorization",
  "*.authorization",
  "req.headers.authorization",
  "headers.authorization",
  "key",
  "*.key",
  "api_key",
  "*.api_key",
  "master_key",
  "*.master_key",
  "apiKey",
  "*.apiKey",
];

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? "info";
  const config = { level, redact: { paths: REDACT_PATHS, censor: "[redacted]" }, base: { pid: process.pid } };
  if (options.destination) return pino(config, options.destination as pino.DestinationStream);
  // Asynchronous destination: a request must never wait on a write to stdout (issue 5: no sync logging
  // on the hot path). It is flushed on shutdown by the gateway.
  return pino(config, pino.destination({ dest: 1, sync: false }));
}
