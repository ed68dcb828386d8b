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

/**
 * For a warning that every request repeats while one dependency is down (each L2 call while Redis restarts):
 * the first of each kind is logged at once, then at most one line per `intervalMs` saying how many were left
 * out. A thousand identical lines a second cost the CPU a recovering replica needs and hide everything else.
 */
export function repeatedWarning(logger: Logger, intervalMs = 10_000, now: () => number = Date.now): (kind: string, fields: object, msg: string) => void {
  const kinds = new Map<string, { loggedAt: number; leftOut: number }>();
  return (kind, fields, msg) => {
    const t = now();
    const seen = kinds.get(kind);
    if (seen && t - seen.loggedAt < intervalMs) {
      seen.leftOut++;
      return;
    }
    logger.warn(seen && seen.leftOut > 0 ? { ...fields, similar_left_out: seen.leftOut } : fields, msg);
    kinds.set(kind, { loggedAt: t, leftOut: 0 });
  };
}
