#!/usr/bin/env node
import { parseArgs } from "node:util";
import { ConfigError, loadSettings, type Settings } from "./config/settings.js";
import { createLogger, type Logger } from "./logger.js";
import { loadOrCreateMasterKey } from "./auth/master-key.js";
import { startGateway } from "./gateway.js";
import { ensureDatabaseExists } from "./store/db.js";
import { migrateDirect } from "./store/migrator.js";

const USAGE = `Usage:
  gatehouse start [--config FILE] [--port N]   run a gateway replica (migrates first)
  gatehouse migrate [--config FILE]            apply database migrations and exit
  gatehouse config check FILE                  validate a config file without starting

Environment: DATABASE_URL, DATABASE_LISTEN_URL, REDIS_URL, GATEHOUSE_MASTER_KEY, PORT, GATEHOUSE_CONFIG,
GATEHOUSE_DATA_DIR, GATEHOUSE_REDIS_PREFIX, LOG_LEVEL.`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: "string", short: "c" }, port: { type: "string", short: "p" }, help: { type: "boolean", short: "h" } },
  });
  const [command, sub, fileArg] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new ConfigError(`--port: "${values.port}" is not a port number`);

  switch (command) {
    case "start":
      return start(loadSettings({ file: values.config, portOverride: port }));
    case "migrate": {
      const settings = loadSettings({ file: values.config });
      if (settings.embedded) {
        console.log("no DATABASE_URL: the embedded database is migrated when `gatehouse start` opens it");
        return 0;
      }
      await ensureDatabaseExists(settings.databaseListenUrl);
      const applied = await migrateDirect(settings.databaseListenUrl);
      console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
      return 0;
    }
    case "config": {
      const file = fileArg ?? values.config;
      if (sub !== "check" || !file) {
        console.error("usage: gatehouse config check FILE");
        return 2;
      }
      const settings = loadSettings({ file });
      for (const warning of settings.warnings) console.warn(`warning: ${warning}`);
      console.log(`${settings.source}: ok (${settings.models.length} model deployments)`);
      return 0;
    }
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function start(settings: Settings): Promise<number> {
  const logger = createLogger();
  for (const warning of settings.warnings) logger.warn(warning);
  let masterKey = settings.masterKey;
  if (!masterKey) {
    const generated = loadOrCreateMasterKey(settings.dataDir);
    masterKey = generated.key;
    logger.warn(
      { file: generated.file },
      generated.created
        ? "no GATEHOUSE_MASTER_KEY set: generated a master key and saved it to this file (read it from there; set GATEHOUSE_MASTER_KEY for multi-replica deployments)"
        : "no GATEHOUSE_MASTER_KEY set: using the master key saved in this file",
    );
  }
  const gateway = await startGateway({ settings, masterKey, logger });
  logger.info({ url: gateway.url, port: gateway.port, config: settings.source, models: [...new Set(settings.models.map((m) => m.modelName))] }, "gatehouse is listening");
  const clean = await waitForSignal(gateway.close, logger, settings.shutdown.delayMs + settings.shutdown.drainTimeoutMs + SHUTDOWN_MARGIN_MS);
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  // Exit explicitly: a socket some library failed to close (pg-listen can leak one when closed in the
  // middle of a reconnect) must not keep a replica that has finished shutting down alive.
  process.exit(clean ? 0 : 1);
}

// Beyond the delay and the drain, closing pools and the listener gets this long; a shutdown that has not
// finished by then is abandoned: better a hard exit than a replica that never ends.
const SHUTDOWN_MARGIN_MS = 10_000;

/** Resolves after a SIGTERM/SIGINT once the gateway is closed: true when it closed cleanly. */
function waitForSignal(close: () => Promise<void>, logger: Logger, deadlineMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "shutting down");
      const deadline = setTimeout(() => {
        logger.error({ deadline_ms: deadlineMs }, "shutdown did not finish in time; exiting anyway");
        resolve(false);
      }, deadlineMs);
      deadline.unref();
      close().then(
        () => {
          clearTimeout(deadline);
          logger.info("shut down cleanly");
          resolve(true);
        },
        (err) => {
          clearTimeout(deadline);
          logger.error({ err: (err as Error).message }, "error while shutting down");
          resolve(false);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      console.error(`gatehouse: ${err.message}`);
      process.exitCode = 78; // EX_CONFIG
      return;
    }
    const e = err as Error & { code?: string };
    console.error(`gatehouse: ${e.message}${e.code ? ` (${e.code})` : ""}`);
    process.exitCode = 1;
  },
);
