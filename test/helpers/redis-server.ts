import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../support/services.mjs";

/**
 * A Redis server of the chaos suite's own, on a free port: restarting it must not disturb the shared
 * Redis other test files are using at the same time.
 *
 * The server runs in a private temporary directory (`--dir`) with automatic saving off, so it never
 * reads or writes a dump.rdb anywhere else, and starts empty unless told to load a snapshot.
 */
export interface RedisServer {
  port: number;
  url: string;
  /** The server's private directory; removed by stop(). */
  dir: string;
  /** SIGKILLs the server and starts it again on the same port, empty. */
  restart(downMs?: number): Promise<void>;
  /**
   * Makes the running server SAVE its dataset and copies the RDB file to a uniquely named file
   * (inside `dir`, so stop() removes it); returns that file's path.
   */
  snapshot(): Promise<string>;
  /** SIGKILLs the server and starts it again on the same port with exactly the dataset of `snapshotPath`. */
  restartFrom(snapshotPath: string, downMs?: number): Promise<void>;
  /** Freezes the server (SIGSTOP) for `ms`, then lets it go on (SIGCONT): connections stay open, nothing answers. */
  pause(ms: number): Promise<void>;
  stop(): Promise<void>;
  /** A replica (started with `replicaOf`): `REPLICAOF NO ONE`, and later restarts start it as a primary. */
  promote(): Promise<void>;
  /** `INFO <section>` of the running server. */
  info(section: string): Promise<string>;
  /** SIGKILLs the server and leaves it down (a crash); relaunch() starts it again. */
  crash(): Promise<void>;
  /** Starts a crashed server again on the same port, empty (no persistence), as a primary unless still a replica. */
  relaunch(): Promise<void>;
}

export interface RedisServerOptions {
  /** Start as a replica of this server (`--replicaof`); a proxy in between lets a test make it lag. */
  replicaOf?: { host: string; port: number };
  /** More redis-server arguments, on every (re)start (e.g. `--repl-diskless-sync-delay 0`). */
  extraArgs?: string[];
}

const DBFILENAME = "dump.rdb";

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  let replicaOf = options.replicaOf;
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "gatehouse-chaos-redis-"));
  const dump = join(dir, DBFILENAME);
  let child: ChildProcess | undefined;
  let stopped = false;
  // Should the test process end without stop() (a crash, a killed worker), the server goes with it.
  const onExit = () => {
    try {
      child?.kill("SIGKILL");
    } catch {}
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {}
  };
  process.once("exit", onExit);

  /** Starts redis-server; it loads `dir`/dump.rdb if there is one, so callers put or remove that first. */
  const launch = async () => {
    let output = "";
    const proc = spawn(
      "redis-server",
      [
        ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--dbfilename", DBFILENAME, "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        ...(replicaOf ? ["--replicaof", replicaOf.host, String(replicaOf.port), "--repl-timeout", "60"] : []),
        ...(options.extraArgs ?? []),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child = proc;
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-2_000);
    };
    proc.stdout!.on("data", keep);
    proc.stderr!.on("data", keep);
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => {});
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await probe.connect();
        await probe.ping(); // -LOADING while an RDB is still being read
        probe.disconnect();
        return;
      } catch {
        probe.disconnect();
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(`redis-server on ${port} exited (${proc.exitCode ?? proc.signalCode}) while starting:\n${output}`);
        }
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const kill = () =>
    new Promise<void>((resolve) => {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once("exit", () => resolve());
      proc.kill("SIGKILL");
    });
  const client = <T>(use: (redis: Redis) => Promise<T>): Promise<T> => withRedisAt(`redis://127.0.0.1:${port}`, use);

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    async restart(downMs = 500) {
      await kill();
      await rm(dump, { force: true });
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    async snapshot() {
      // SAVE is synchronous: when it answers OK, dump.rdb is complete (written to a temp file, then renamed).
      await client((redis) => redis.save());
      const path = join(dir, `snapshot-${randomUUID()}.rdb`);
      await copyFile(dump, path);
      return path;
    },
    async restartFrom(snapshotPath: string, downMs = 500) {
      await kill();
      if (resolve(snapshotPath) !== dump) await copyFile(snapshotPath, dump);
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    async pause(ms: number) {
      child?.kill("SIGSTOP");
      try {
        await new Promise((r) => setTimeout(r, ms));
      } finally {
        child?.kill("SIGCONT");
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill();
      process.removeListener("exit", onExit);
      await rm(dir, { recursive: true, force: true });
    },
    async promote() {
      await client((redis) => redis.replicaof("NO", "ONE"));
      replicaOf = undefined;
    },
    info: (section: string) => client((redis) => redis.info(section)),
    crash: () => kill(),
    async relaunch() {
      await rm(dump, { force: true });
      await launch();
    },
  };
}

/** A short-lived client for one use: connects, runs `use`, disconnects; fails fast when nothing answers. */
export async function withRedisAt<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}
