import { createRequire } from "node:module";
import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Paths redacted in every log line. Keys, the master key and upstream secrets must never reach a log
 * (a rule of this project); the request logger only ever logs `key_name` (sk-...abcd).
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
  // JSON by default (what log pipelines want); LOG_FORMAT=pretty, or NODE_ENV=development, for people.
  const format = process.env.LOG_FORMAT ?? (process.env.NODE_ENV === "development" ? "pretty" : "json");
  if (format === "pretty") {
    if (isInstalled("pino-pretty")) return pino({ ...config, transport: { target: "pino-pretty", options: { translateTime: "SYS:HH:MM:ss.l" } } });
    process.stderr.write("LOG_FORMAT=pretty needs the dev dependency pino-pretty (npm ci without --omit=dev); logging JSON\n");
  }
  // Asynchronous destination: a request must never wait on a write to stdout (no sync logging
  // on the hot path). It is flushed on shutdown by the gateway.
  const destination = pino.destination({ dest: 1, sync: false });
  // stdout's reader may go away (`gatehouse start | head -3`): an EPIPE must neither crash the gateway nor hold
  // up its shutdown. Lines written after that are lost, like everything else written to a closed pipe.
  destination.on("error", () => {});
  process.stdout.on("error", () => {});
  return pino(config, destination);
}

function isInstalled(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
