// A PgBouncer of the test's own, in transaction pooling mode, in front of the local Postgres
// (docs/deploy/pgbouncer.ini is the documented setup; this is the same with test paths and ports).
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, waitForPort } from "./services.mjs";

export const PGBOUNCER = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].find((p) => existsSync(p));

export async function startPgBouncer({ poolSize = 4 } = {}) {
  if (!PGBOUNCER) throw new Error("pgbouncer is not installed (apt-get install pgbouncer)");
  const dir = mkdtempSync(path.join(tmpdir(), "gh-pgbouncer-"));
  chmodSync(dir, 0o777); // pgbouncer drops root privileges to the postgres user and writes here
  const port = await freePort();
  const ini = path.join(dir, "pgbouncer.ini");
  writeFileSync(
    ini,
    [
      "[databases]",
      "* = host=127.0.0.1 port=5432 user=postgres",
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      "auth_type = any",
      "admin_users = postgres",
      "pool_mode = transaction",
      `default_pool_size = ${poolSize}`,
      "max_client_conn = 500",
      // node-postgres sends statement_timeout at connect; PgBouncer cannot track it per transaction.
      "ignore_startup_parameters = statement_timeout",
      `logfile = ${dir}/pgbouncer.log`,
      `pidfile = ${dir}/pgbouncer.pid`,
      "",
    ].join("\n"),
  );
  chmodSync(ini, 0o644);
  const args = process.getuid?.() === 0 ? ["-u", "postgres", ini] : [ini];
  const child = spawn(PGBOUNCER, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  await waitForPort(port, { what: "pgbouncer", gaveUp: () => (child.exitCode !== null ? `exited ${child.exitCode}` : undefined) }).catch((err) => {
    throw new Error(`${err.message}; its stderr: ${stderr}`);
  });
  return {
    port,
    /** The same database through PgBouncer. */
    url: (directUrl) => {
      const u = new URL(directUrl);
      u.host = `127.0.0.1:${port}`;
      return u.toString();
    },
    /** PgBouncer's admin console (SHOW STATS, SHOW POOLS). */
    adminUrl: `postgres://postgres@127.0.0.1:${port}/pgbouncer`,
    async stop() {
      if (child.exitCode !== null) return;
      await new Promise((resolve) => {
        child.once("exit", resolve);
        child.kill("SIGTERM");
      });
    },
  };
}
