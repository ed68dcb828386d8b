import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import { AggregatorRegistry, type Registry } from "prom-client";
import type { Logger } from "./logger.js";

/**
 * `gatehouse start --workers N`: N worker processes on one port (node:cluster), every core used.
 *
 * Each worker is a full replica as far as coherence is concerned: its own caches, its own LISTEN connection,
 * its own catch-up and heartbeat (docs/workers.md says why one connection per worker rather than one per host
 * fanned out). The primary process serves no request: it forks the workers, restarts one that dies, tells the
 * workers how many of them are up (readiness), answers their requests for the host's merged metrics, and on
 * SIGTERM stops them all — each drains its own requests — before it exits.
 */

/** Messages between the primary and its workers (IPC). */
type ToPrimary = { type: "gatehouse:listening"; port: number } | { type: "gatehouse:metrics?"; id: number };
type ToWorker = { type: "gatehouse:workers"; expected: number; listening: number } | { type: "gatehouse:metrics"; id: number; text?: string; error?: string };

const MAX_WORKERS = 64;
// A worker that dies is forked again after this, doubled for each death in a row (a crash loop must not spin).
const RESTART_BACKOFF_MS = 500;
const MAX_RESTART_BACKOFF_MS = 30_000;
// A worker that stayed up this long is healthy again: its next death starts the backoff over.
const STABLE_AFTER_MS = 60_000;

/** `--workers` or `server.workers`: a count, or `auto` (one per core). */
export function parseWorkerCount(value: string | number): number {
  if (value === "auto") return Math.min(MAX_WORKERS, availableParallelism());
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) throw new RangeError(`--workers: "${value}" is not a number of workers from 1 to ${MAX_WORKERS}, or "auto"`);
  return n;
}

/** This process's place among the workers, or undefined when it runs alone. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const index = Number(process.env.GATEHOUSE_WORKER_INDEX);
  return Number.isInteger(index) ? index : undefined;
}

/**
 * The young generation (V8's semi-space) a gateway's allocation pattern wants: every request allocates a few
 * KiB that die at once; a larger nursery means fewer scavenges per request (docs/performance.md).
 */
export const YOUNG_GENERATION_FLAG = "--max-semi-space-size=32";

export interface SuperviseOptions {
  count: number;
  logger: Logger;
  /** Environment every worker gets on top of the primary's (the master key, when the primary read or made it). */
  env: Record<string, string>;
  /** Node.js flags for the workers (the young generation's size). */
  execArgv: string[];
  /** How long a worker may take to drain and close once told to stop; then it is killed. */
  shutdownDeadlineMs: number;
}

/** The primary: runs until SIGTERM/SIGINT has stopped every worker; resolves with the exit code. */
export function superviseWorkers(o: SuperviseOptions): Promise<number> {
  const aggregator = new AggregatorRegistry(); // also installs the primary's side of the metrics merge
  cluster.setupPrimary({ execArgv: o.execArgv });
  const listening = new Set<number>();
  const byIndex = new Map<number, Worker>();
  const deaths = new Map<number, number>();
  let stopping = false;
  let started = false;

  const broadcast = () => {
    const message: ToWorker = { type: "gatehouse:workers", expected: o.count, listening: listening.size };
    for (const w of byIndex.values()) if (w.isConnected()) w.send(message);
  };

  return new Promise<number>((resolve) => {
    const fork = (index: number) => {
      const worker = cluster.fork({ ...o.env, GATEHOUSE_WORKER_INDEX: String(index) });
      const forkedAt = Date.now();
      byIndex.set(index, worker);
      worker.on("message", (message: ToPrimary) => {
        if (message?.type === "gatehouse:listening") {
          listening.add(index);
          broadcast();
          if (!started && listening.size === o.count) {
            started = true;
            o.logger.info({ url: `http://127.0.0.1:${message.port}`, port: message.port, workers: o.count }, "gatehouse is listening");
          }
        } else if (message?.type === "gatehouse:metrics?") {
          aggregator.clusterMetrics().then(
            (text) => worker.isConnected() && worker.send({ type: "gatehouse:metrics", id: message.id, text } satisfies ToWorker),
            (err: Error) => worker.isConnected() && worker.send({ type: "gatehouse:metrics", id: message.id, error: err.message } satisfies ToWorker),
          );
        }
      });
      worker.once("exit", (code, signal) => {
        listening.delete(index);
        byIndex.delete(index);
        if (stopping) {
          if (byIndex.size === 0) resolve(exitCode);
          return;
        }
        if (!started) {
          // A worker that cannot start says why itself (one line); the others are stopped and the start fails.
          o.logger.fatal({ worker: index, code, signal }, "a worker failed to start; stopping the others");
          exitCode = 1;
          stopAll("start failed");
          return;
        }
        broadcast();
        const inARow = Date.now() - forkedAt > STABLE_AFTER_MS ? 0 : (deaths.get(index) ?? 0) + 1;
        deaths.set(index, inARow);
        const delay = Math.min(MAX_RESTART_BACKOFF_MS, RESTART_BACKOFF_MS * 2 ** Math.max(0, inARow - 1));
        o.logger.error({ worker: index, code, signal, restart_in_ms: delay }, "a worker exited; starting another in its place");
        setTimeout(() => stopping || fork(index), delay).unref();
      });
    };

    let exitCode = 0;
    const stopAll = (reason: string) => {
      if (stopping) return;
      stopping = true;
      o.logger.info({ reason, workers: byIndex.size }, "shutting down: stopping every worker");
      if (byIndex.size === 0) return resolve(exitCode);
      for (const w of byIndex.values()) {
        w.once("exit", (code) => {
          if (code !== 0) exitCode = 1;
        });
        w.process.kill("SIGTERM");
      }
      const deadline = setTimeout(() => {
        o.logger.error({ deadline_ms: o.shutdownDeadlineMs, left: byIndex.size }, "workers did not stop in time; killing them");
        exitCode = 1;
        for (const w of byIndex.values()) w.process.kill("SIGKILL");
      }, o.shutdownDeadlineMs);
      deadline.unref();
    };
    process.on("SIGTERM", () => stopAll("SIGTERM"));
    process.on("SIGINT", () => stopAll("SIGINT"));
    for (let i = 0; i < o.count; i++) fork(i);
  });
}

/**
 * A worker's side of the cluster: tells the primary it listens, keeps the primary's count of workers up (for
 * readiness), and asks the primary for the host's merged metrics.
 */
export class WorkerLink {
  private status = { expected: 0, listening: 0 };
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();

  constructor(readonly index: number) {
    process.on("message", (message: ToWorker) => {
      if (message?.type === "gatehouse:workers") this.status = { expected: message.expected, listening: message.listening };
      else if (message?.type === "gatehouse:metrics") {
        const waiting = this.pending.get(message.id);
        this.pending.delete(message.id);
        if (message.text !== undefined) waiting?.resolve(message.text);
        else waiting?.reject(new Error(message.error ?? "no metrics"));
      }
    });
  }

  /** Answers the primary's requests for this worker's metrics (prom-client's side of the merge). */
  shareMetrics(registry: Registry): void {
    AggregatorRegistry.setRegistries([registry]);
    new AggregatorRegistry();
  }

  listening(port: number): void {
    process.send?.({ type: "gatehouse:listening", port } satisfies ToPrimary);
  }

  /** Workers up, as the primary last said. */
  get workers(): { expected: number; listening: number } {
    return this.status;
  }

  /** Every worker's metrics, merged by the primary (counters and histograms summed). */
  hostMetrics(): Promise<string> {
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      process.send?.({ type: "gatehouse:metrics?", id } satisfies ToPrimary);
    });
  }
}
