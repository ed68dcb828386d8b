import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, waitForPort } from "../support/services.mjs";
import { type RedisServer, startRedisServer, withRedisAt } from "./redis-server.js";
import { waitFor } from "./services.js";

/**
 * A Redis master, its replica and three Sentinels watching them (the failover tests and the history checker's
 * Sentinel segment): gateways find Redis through the Sentinels (REDIS_SENTINELS), and a failover is the master's
 * crash and the Sentinels' promotion of the replica. The crashed server comes back empty and the Sentinels make it
 * the new master's replica, ready for the next failover. Sentinels are `redis-server --sentinel` (what the
 * redis-sentinel package's binary is), so nothing beyond redis-server is needed.
 */
export interface SentinelRedis {
  /** REDIS_SENTINELS for the replicas: host:port,… */
  sentinels: string;
  name: string;
  master: RedisServer;
  replica: RedisServer;
  /** Every Sentinel knows the other two and a linked replica: a failover can happen. */
  ready(timeoutMs?: number): Promise<void>;
  /** The master's address as the Sentinels announce it now. */
  masterPort(): Promise<number>;
  /** Crashes the master, waits for the Sentinels to promote the replica, relaunches the old master (empty). */
  failover(onCrash: () => void, onPromoted: () => void): Promise<void>;
  stop(): Promise<void>;
}

export async function startSentinelRedis(name = "gatehouse"): Promise<SentinelRedis> {
  // A new replica's first sync starts at once (Redis 7 waits 5 s for more replicas to share a diskless transfer).
  const extraArgs = ["--repl-diskless-sync-delay", "0"];
  let master = await startRedisServer({ extraArgs });
  let replica = await startRedisServer({ replicaOf: { host: "127.0.0.1", port: master.port }, extraArgs });
  const dir = mkdtempSync(path.join(tmpdir(), "gh-chaos-sentinel-"));
  const ports = [await freePort(), await freePort(), await freePort()];
  const children: ChildProcess[] = [];
  const killAll = () => {
    for (const c of children) {
      try {
        process.kill(-c.pid!, "SIGKILL");
      } catch {}
    }
  };
  process.once("exit", killAll);
  for (const port of ports) {
    const conf = path.join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        "bind 127.0.0.1",
        "protected-mode no",
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 3000`,
        `sentinel parallel-syncs ${name} 1`,
        "",
      ].join("\n"),
    );
    children.push(spawn("redis-server", [conf, "--sentinel"], { detached: true, stdio: "ignore" }));
  }
  for (const port of ports) await waitForPort(port, { what: `redis-sentinel ${port}` });

  const sentinelCall = <T>(port: number, ...args: string[]) => withRedisAt(`redis://127.0.0.1:${port}`, (r) => r.call("SENTINEL", ...args) as Promise<T>);
  const masterPort = async () => Number((await sentinelCall<string[]>(ports[0]!, "GET-MASTER-ADDR-BY-NAME", name))[1]);

  const s: SentinelRedis = {
    sentinels: ports.map((p) => `127.0.0.1:${p}`).join(","),
    name,
    masterPort,
    get master() {
      return master;
    },
    get replica() {
      return replica;
    },
    async ready(timeoutMs = 20_000) {
      await waitFor(
        async () => {
          if (!/master_link_status:up/.test(await replica.info("replication").catch(() => ""))) return false;
          for (const port of ports) {
            const info = await sentinelCall<string[]>(port, "MASTER", name).catch(() => [] as string[]);
            const field = (name: string) => info[info.indexOf(name) + 1];
            if (Number(field("port")) !== master.port || Number(field("num-other-sentinels")) !== 2 || Number(field("num-slaves")) < 1) return false;
            if (!/^master$/.test(field("flags") ?? "")) return false;
          }
          return true;
        },
        { timeoutMs, intervalMs: 200, what: "the Sentinels to know each other and a linked replica" },
      );
    },
    async failover(onCrash, onPromoted) {
      const old = master;
      await old.crash();
      onCrash();
      await waitFor(async () => (await masterPort().catch(() => old.port)) === replica.port, { timeoutMs: 20_000, intervalMs: 100, what: "the Sentinels to promote the replica" });
      master = replica;
      replica = old;
      onPromoted();
      // Back empty; the Sentinels tell it to follow the new master.
      await old.relaunch();
    },
    async stop() {
      killAll();
      process.removeListener("exit", killAll);
      await master.stop();
      await replica.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await s.ready();
  return s;
}
