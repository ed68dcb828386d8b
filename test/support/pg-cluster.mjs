// A Postgres primary with a streaming standby of its own, on ports of its own, for failover tests (types in
// pg-cluster.d.mts). Never touches the main cluster on 5432.
//  - the standby streams WAL from the primary through a TCP proxy (`walProxy`): blackholing it withholds the
//    last commits from the standby, so a promotion after that loses them (an asynchronous replica that lagged);
//  - killPrimary(): SIGKILL of the primary's postmaster and its backends (a crash, no shutdown checkpoint);
//  - promoteStandby(): `pg_ctl promote` and wait until it accepts writes (a new timeline);
//  - waitForStandbyCaughtUp(): the standby has replayed everything the primary has written so far;
//  - stopPrimary(): a clean shutdown (`pg_ctl stop -m fast`: the standby receives the shutdown checkpoint);
//  - rebuildStandby(): after a promotion, the promoted server is the primary and a new standby is copied from it
//    (pg_basebackup -R -c fast through `walProxy` again), so a run can fail over again and again.
// Each server is a `postgres` process spawned in its own process group as the `postgres` user; stop() (and the
// test process's exit) kills the groups, so nothing outlives the test.
import { spawn, execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync, chmodSync, appendFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort, waitForPort } from "./services.mjs";
import { startTcpProxy } from "./tcp-proxy.mjs";

const BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";
const live = new Set();
process.once("exit", () => {
  for (const child of live) killGroup(child, "SIGKILL");
});

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {}
}

function postgresUser() {
  const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
  return { uid, gid };
}

// Asynchronous: the WAL proxy runs in this process, and pg_basebackup streams through it.
async function runAsPostgres(file, args, user) {
  await promisify(execFile)(path.join(BIN, file), args, { uid: user.uid, gid: user.gid, env: { PATH: process.env.PATH ?? "" } });
}

/** Settings both servers share: fast and small, durable enough for a test (fsync off). */
function serverConf(port, socketDir) {
  return [
    `port=${port}`,
    "listen_addresses='127.0.0.1'",
    `unix_socket_directories='${socketDir}'`,
    "wal_level=replica",
    "max_wal_senders=5",
    "max_connections=200",
    "fsync=off",
    "synchronous_commit=on",
    "shared_buffers=32MB",
    "wal_receiver_timeout=5s",
    "wal_sender_timeout=5s",
    // A standby whose primary went away retries (and notices a promotion) within half a second, not 5 s.
    "wal_retrieve_retry_interval=500ms",
    "log_min_messages=warning",
    "",
  ].join("\n");
}

export async function startPgPair({ database = "gatehouse" } = {}) {
  const user = postgresUser();
  const root = mkdtempSync(path.join(os.tmpdir(), "gh-pgpair-"));
  chmodSync(root, 0o777);
  const primaryDir = path.join(root, "primary");
  const standbyDir = path.join(root, "standby");
  const primaryPort = await freePort();
  const standbyPort = await freePort();
  // Which server plays which role: swapped by rebuildStandby() (a promotion alone leaves the names as they were).
  const role = { primary: { dir: primaryDir, port: primaryPort }, standby: { dir: standbyDir, port: standbyPort } };
  const dirs = [primaryDir, standbyDir];
  let rebuilds = 0;
  await runAsPostgres("initdb", ["-D", primaryDir, "-U", "postgres", "-A", "trust", "--no-sync"], user);
  appendFileSync(`${primaryDir}/postgresql.conf`, serverConf(primaryPort, root));
  appendFileSync(`${primaryDir}/pg_hba.conf`, "host replication all 127.0.0.1/32 trust\n");

  const servers = { primary: null, standby: null };
  const start = async (which, dir, port) => {
    const child = spawn(path.join(BIN, "postgres"), ["-D", dir], {
      uid: user.uid,
      gid: user.gid,
      detached: true,
      stdio: ["ignore", "ignore", "pipe"],
      env: { PATH: process.env.PATH ?? "" },
    });
    const log = [];
    child.stderr.on("data", (chunk) => log.push(chunk.toString("utf8")));
    live.add(child);
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
    void exited.then(() => live.delete(child));
    servers[which] = { child, exited, log, port, dir };
    await waitForPort(port, { timeoutMs: 30_000, what: `postgres ${which}`, gaveUp: () => (child.exitCode !== null ? log.join("") : undefined) });
    await waitUntil(async () => (await query(port, "postgres", "SELECT 1")) !== null, 30_000, `postgres ${which} accepting queries`);
  };

  await start("primary", primaryDir, primaryPort);
  if ((await query(primaryPort, "postgres", `CREATE DATABASE ${database}`)) === null) throw new Error(`could not create database ${database}`);

  // The standby streams through a proxy, so a test can withhold WAL from it.
  const walProxy = await startTcpProxy("127.0.0.1", primaryPort);
  await runAsPostgres("pg_basebackup", ["-h", "127.0.0.1", "-p", String(walProxy.port), "-U", "postgres", "-D", standbyDir, "-R", "-c", "fast", "--no-sync"], user);
  // The copied configuration names the primary's port; the standby has its own.
  appendFileSync(`${standbyDir}/postgresql.conf`, `port=${standbyPort}\n`);
  await start("standby", standbyDir, standbyPort);

  const url = (port) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  let stopped = false;
  return {
    root,
    database,
    get primary() {
      return { port: role.primary.port, url: url(role.primary.port) };
    },
    get standby() {
      return { port: role.standby.port, url: url(role.standby.port) };
    },
    walProxy,
    /** Every byte the primary has written so far has been replayed by the standby. */
    async waitForStandbyCaughtUp(timeoutMs = 15_000) {
      const lsn = (await query(role.primary.port, "postgres", "SELECT pg_current_wal_lsn()::text AS lsn"))[0].lsn;
      await waitUntil(
        async () => {
          const rows = await query(role.standby.port, "postgres", "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0 AS done", [lsn]);
          return rows?.[0]?.done === true;
        },
        timeoutMs,
        "the standby to replay the primary's WAL",
      );
    },
    /** A crash: no shutdown checkpoint, nothing more sent to the standby. */
    async killPrimary() {
      const server = servers.primary;
      if (!server || server.child.exitCode !== null) return;
      killGroup(server.child, "SIGKILL");
      await server.exited;
      // The postmaster's backends notice their parent is gone and exit; make sure of it (they hold the port).
      try {
        execFileSync("pkill", ["-KILL", "-f", `postgres -D ${server.dir}$`]);
      } catch {}
    },
    /** A clean shutdown of the primary (`pg_ctl stop -m fast`): its last WAL, the shutdown checkpoint included, reaches a connected standby. */
    async stopPrimary() {
      const server = servers.primary;
      if (!server || server.child.exitCode !== null || server.child.signalCode !== null) return;
      await runAsPostgres("pg_ctl", ["-D", server.dir, "stop", "-m", "fast", "-w", "-t", "30"], user);
      await server.exited;
    },
    /** Promotes the standby (a new timeline) and waits until it takes writes. */
    async promoteStandby() {
      await runAsPostgres("pg_ctl", ["-D", role.standby.dir, "promote", "-w", "-t", "30"], user);
      await waitUntil(
        async () => (await query(role.standby.port, "postgres", "SELECT NOT pg_is_in_recovery() AS writable"))?.[0]?.writable === true,
        30_000,
        "the promoted standby to take writes",
      );
    },
    /**
     * After promoteStandby(): the promoted server becomes `primary` (the old one is killed if it still runs, its
     * directory removed), and a new `standby` is copied from it with pg_basebackup -R -c fast, on a port of its
     * own. The copy is read straight from the primary (tens of megabytes crawl through a proxy in a busy process);
     * the standby then streams WAL through `walProxy` (retargeted to the new primary, set to pass), as the first did.
     */
    async rebuildStandby() {
      const old = servers.primary;
      if (old && old.child.exitCode === null && old.child.signalCode === null) {
        killGroup(old.child, "SIGKILL");
        await old.exited;
      }
      try {
        execFileSync("pkill", ["-KILL", "-f", `postgres -D ${role.primary.dir}$`]);
      } catch {}
      rmSync(role.primary.dir, { recursive: true, force: true });
      servers.primary = servers.standby;
      role.primary = role.standby;
      const dir = path.join(root, `rebuilt-${++rebuilds}`);
      const port = await freePort();
      dirs.push(dir);
      walProxy.setMode("pass");
      walProxy.retarget("127.0.0.1", role.primary.port);
      await runAsPostgres("pg_basebackup", ["-h", "127.0.0.1", "-p", String(role.primary.port), "-U", "postgres", "-D", dir, "-R", "-c", "fast", "--no-sync"], user);
      appendFileSync(`${dir}/postgresql.conf`, `port=${port}\n`);
      // -R wrote the primary's own port; the stream goes through the proxy (the later line wins).
      appendFileSync(`${dir}/postgresql.auto.conf`, `primary_conninfo = 'host=127.0.0.1 port=${walProxy.port} user=postgres'\n`);
      role.standby = { dir, port };
      await start("standby", dir, port);
    },
    /** Rows of one statement on the primary or the standby (null when it does not answer). */
    query: (which, sql, params) => query(which === "primary" ? role.primary.port : role.standby.port, database, sql, params),
    async stop() {
      if (stopped) return;
      stopped = true;
      await walProxy.close();
      for (const server of [servers.standby, servers.primary]) {
        if (!server || server.child.exitCode !== null || server.child.signalCode !== null) continue;
        killGroup(server.child, "SIGKILL");
        await server.exited;
      }
      for (const dir of dirs) {
        try {
          execFileSync("pkill", ["-KILL", "-f", `postgres -D ${dir}$`]);
        } catch {}
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Rows of one statement on a server, or null when it does not answer (yet). */
async function query(port, database, sql, params = []) {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database, connectionTimeoutMillis: 2_000, query_timeout: 5_000 });
  client.on("error", () => {});
  try {
    await client.connect();
    return (await client.query(sql, params)).rows;
  } catch {
    return null;
  } finally {
    await client.end().catch(() => {});
  }
}

async function waitUntil(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
