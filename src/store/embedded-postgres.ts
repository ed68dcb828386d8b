import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import type { Logger } from "../logger.js";
import { lockDataDir } from "./data-dir-lock.js";

/**
 * The embedded default: with no DATABASE_URL, a real Postgres compiled to WebAssembly (PGlite)
 * keeps its data in `<dataDir>/pgdata`, served to node-postgres over a loopback socket by pglite-socket,
 * so every other module talks to it exactly as to a Postgres server. PGlite is one backend: the pool
 * gets a single connection, and there is no LISTEN (a single replica applies its own changes at commit).
 * Loaded only in this mode, so a deployment on a real Postgres never loads the WASM module.
 */
export interface EmbeddedPostgres {
  url: string;
  dataDir: string;
  close(): Promise<void>;
}

export async function startEmbeddedPostgres(dataDir: string, logger: Logger): Promise<EmbeddedPostgres> {
  const dir = path.resolve(dataDir, "pgdata");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = lockDataDir(dataDir);
  const fresh = !existsSync(path.join(dir, "PG_VERSION"));
  const started = performance.now();
  // Said before it happens: creating the database is the one slow step of a first start.
  logger.info({ data_dir: dir }, fresh ? "creating the embedded database (first start only: a few seconds)" : "opening the embedded database");
  let db: Awaited<ReturnType<typeof import("@electric-sql/pglite").PGlite.create>> | undefined;
  let server: InstanceType<typeof import("@electric-sql/pglite-socket").PGLiteSocketServer> | undefined;
  try {
    const { PGlite } = await import("@electric-sql/pglite");
    const { PGLiteSocketServer } = await import("@electric-sql/pglite-socket");
    db = await PGlite.create(dir);
    server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0 });
    await server.start();
  } catch (err) {
    await server?.stop().catch(() => {});
    await db?.close().catch(() => {});
    lock.release();
    throw err;
  }
  logger.info({ ms: Math.round(performance.now() - started) }, "embedded database ready");
  const openedDb = db;
  const openedServer = server;
  const conn = openedServer.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(":") + 1));
  logger.debug({ data_dir: dir, port }, "embedded Postgres (PGlite) is up");
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dataDir: dir,
    async close() {
      try {
        await openedServer.stop();
        await openedDb.close();
      } finally {
        lock.release();
      }
    },
  };
}
