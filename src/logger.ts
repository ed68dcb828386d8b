import { fstatSync, writeSync } from "node:fs";
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
  // A request must never wait on a write to stdout (no blocking write on the hot path); the log is flushed on
  // shutdown by the gateway. stdout's reader may go away (`gatehouse start | head -3`): an EPIPE must neither crash
  // the gateway nor hold up its shutdown. Lines written after that are lost, like everything else written to a
  // closed pipe.
  return pino(config, stdoutDestination());
}

/**
 * Where the log's lines go: stdout, through the stream on it when it is a pipe or a socket, pino's destination
 * otherwise. One per process, whichever logger asks: they all write to the one stdout, and a flush waits for all.
 */
export function stdoutDestination(): pino.DestinationStream {
  if (stdout !== undefined) return stdout;
  process.stdout.on("error", () => {});
  if (stdoutIsPipeOrSocket()) stdout = streamDestination(process.stdout);
  else {
    const destination = pino.destination({ dest: 1, sync: false });
    destination.on("error", () => {});
    stdout = destination;
  }
  return stdout;
}
let stdout: pino.DestinationStream | undefined;

/** stdout is a pipe or a socket: a container's log driver, systemd's journal, `| tee`, a test's reader. */
function stdoutIsPipeOrSocket(): boolean {
  try {
    const stat = fstatSync(1);
    return stat.isFIFO() || stat.isSocket();
  } catch {
    return false;
  }
}

// Held for a reader that stopped reading, before lines are dropped (a log must not grow the heap without bound).
const MAX_HELD_LOG_BYTES = 64 * 1024 * 1024;

/**
 * The log's destination when stdout is a pipe or a socket: Node's own stream on it, which writes without blocking
 * from the event loop (one system call when the pipe has room; held and written when it drains otherwise). pino's
 * own destination writes on libuv's thread pool instead, for files and terminals too: measured here, a write
 * handed to the pool cost 40–60 µs of CPU against 9 for the stream's, so the stream is used wherever it can be.
 *
 * Lines are held and go out together, in order: when what is held would pass PIPE_BUF, and at most HOLD_MS after the
 * first line held. Each write is a system call that also wakes the reader (a container's log driver, on the same
 * cores): a write takes up to some fifteen access lines, where a write per turn of the event loop took what the turn
 * ended (eight at 1,000 req/s, one at low rates), and an idle gateway's line is still out within HOLD_MS. A write
 * stays within PIPE_BUF: a pipe takes a write that size whole, so the lines of workers sharing one stdout never
 * interleave. `flush` writes what is held and waits until every line is written (or failed: the reader is gone); a
 * process that exits (a crash included) writes what is still held on its way out, when nothing before it is still
 * being written (a line of its own would otherwise land inside one the stream has half written).
 */
export function streamDestination(out: NodeJS.WritableStream & { readonly writableLength: number; readonly destroyed: boolean }): pino.DestinationStream & {
  flush(done: (err?: Error) => void): void;
} {
  let warned = false;
  let unwritten = 0;
  const flushes: Array<(err?: Error) => void> = [];
  // Called for each write once it is written, or failed (a destroyed stream fails what it held).
  const written = (): void => {
    if (--unwritten === 0) for (const done of flushes.splice(0)) done();
  };
  // A reader that went away leaves nothing to wait for, whatever the writes in flight do.
  out.once("close", () => {
    for (const done of flushes.splice(0)) done();
  });
  // Lines not yet handed to the stream.
  let held = "";
  let holding = false;
  const handOver = (): void => {
    if (held === "") return;
    const lines = held;
    held = "";
    unwritten++;
    out.write(lines, written);
  };
  const holdOver = (): void => {
    holding = false;
    handOver();
  };
  // On the way out, a crash's too: what is held goes to stdout at once (best effort: a pipe that is full takes none),
  // unless the stream is still writing earlier lines, which exiting cuts off wherever they stand.
  process.once("exit", () => {
    if (held === "" || out.destroyed || out.writableLength > 0) return;
    const fd = (out as { fd?: unknown }).fd;
    try {
      if (typeof fd === "number") writeSync(fd, held);
    } catch {
      // The reader is gone or not reading: the lines are lost, as they would be in the stream.
    }
    held = "";
  });
  return {
    write(lines: string): void {
      if (out.writableLength > MAX_HELD_LOG_BYTES) {
        if (!warned) process.emitWarning(`stdout's reader has not read ${MAX_HELD_LOG_BYTES / 2 ** 20} MiB of log: log lines are dropped until it reads again`);
        warned = true;
        return;
      }
      if (held !== "" && held.length + lines.length > PIPE_BUF_BYTES) handOver();
      held += lines;
      if (!holding) {
        holding = true;
        setTimeout(holdOver, HOLD_MS);
      }
    },
    flush(done: (err?: Error) => void): void {
      handOver();
      if (unwritten === 0 || out.destroyed) done();
      else flushes.push(done);
    },
  };
}

// How long a line may wait for others to share its write: short enough that a person watching the log sees a
// request's line as it ends.
const HOLD_MS = 10;

// What Linux writes to a pipe as one piece (PIPE_BUF). `held.length` counts UTF-16 units, not bytes: lines of
// multi-byte text may take a write a little past it (log lines are mostly ASCII: ids, routes, key names).
const PIPE_BUF_BYTES = 4096;

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
