#!/usr/bin/env node
import cluster from "node:cluster";
import { parseArgs } from "node:util";
import { ConfigError, loadSettings, type Settings } from "./config/settings.js";
import { didYouMean } from "./config/did-you-mean.js";
import { loadOrCreateMasterKey } from "./config/master-key-file.js";
import { createLogger, type Logger } from "./logger.js";
import { startGateway } from "./gateway.js";
import { createPool, ensureDatabaseExists, inTransaction } from "./store/db.js";
import { CredentialSeal } from "./models/credential-seal.js";
import { resealCredentials } from "./models/model-service.js";
import { importLiteLLM } from "./litellm/import-litellm.js";
import { migrateDirect } from "./store/migrator.js";
import { renewLineage } from "./store/event-store.js";
import { packageVersion } from "./paths.js";
import { parseWorkerCount, superviseWorkers, WorkerLink, workerIndex, YOUNG_GENERATION_FLAG } from "./workers.js";

const USAGE = `Usage:
  gatehouse start [--config FILE] [--port N] [--workers N|auto]
                                               run a gateway replica (migrates first); --workers: N worker
                                               processes on one port (auto: one per core; default 1)
  gatehouse migrate [--config FILE]            apply database migrations and exit
  gatehouse import-litellm --from URL [--litellm-salt-key K] [--config FILE]
                                               copy a LiteLLM proxy's teams, users, keys (by hash) and database
                                               models from its Postgres database at URL into this gateway's (all
                                               or nothing); K (or LITELLM_SALT_KEY): LiteLLM's salt key, or its
                                               master key if it had none, opens the models' credentials
  gatehouse models reseal [--config FILE]      seal every stored model credential again with credentials.salt_key
                                               (after a rotation; the previous key must still be configured)
  gatehouse lineage renew [--config FILE]      mark the database as a new history (after restoring a backup onto the
                                               same server): every replica drops its caches and counters of the
                                               old one within a heartbeat (docs/coherence.md, "Engine failover")
  gatehouse config check FILE [--strict]       validate a config file without starting (every problem at once);
                                               os.environ/ variables not set here are listed, to set before
                                               starting; --strict: refuse them (exit 78) as the start does, for CI
  gatehouse help | --help | -h                 this text
  gatehouse version | --version | -v           the version

Environment:
  DATABASE_URL            Postgres (unset: an embedded database in GATEHOUSE_DATA_DIR, one replica); several
                          hosts as libpq writes them: postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write
  DATABASE_LISTEN_URL     a direct connection for LISTEN and migrations (default: DATABASE_URL)
  REDIS_URL               Redis (unset with DATABASE_URL: redis://127.0.0.1:6379; embedded: none)
  REDIS_SENTINELS         host:port,host:port of Redis Sentinels (with REDIS_SENTINEL_NAME, the master's name;
                          REDIS_SENTINEL_PASSWORD if the Sentinels need one): takes precedence over REDIS_URL's host
  GATEHOUSE_MASTER_KEY    the admin key (unset: generated once into GATEHOUSE_DATA_DIR/master_key)
  GATEHOUSE_CONFIG        the config file (same as --config)
  GATEHOUSE_DATA_DIR      local state: the embedded database and the generated master key (./.gatehouse)
  GATEHOUSE_REDIS_PREFIX  prefix of every Redis key (gatehouse:)
  GATEHOUSE_METRICS_TOKEN a bearer that may read /metrics
  PORT                    listen port (same as --port; default 4000)
  LOG_LEVEL               debug, info, warn, error (info)
  LOG_FORMAT              json or pretty (json)
  OPENAI_API_BASE         where openai/ models without an api_base go (https://api.openai.com/v1)
  ANTHROPIC_API_BASE      where anthropic/ models without an api_base go (https://api.anthropic.com)
  Every other setting: GATEHOUSE_<SECTION>_<FIELD>, e.g. GATEHOUSE_SERVER_REQUEST_TIMEOUT_MS (docs/configuration.md).`;

const OPTIONS = {
  config: { type: "string", short: "c" },
  port: { type: "string", short: "p" },
  workers: { type: "string", short: "w" },
  from: { type: "string" },
  "litellm-salt-key": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
  strict: { type: "boolean" },
  // What config check does without --strict now; still accepted, so scripts written for it keep working.
  "env-optional": { type: "boolean" },
} as const;
const COMMANDS = ["start", "migrate", "config", "models", "lineage", "import-litellm", "help", "version"];

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (err) {
    const unknown = /Unknown option '(-{1,2}[^']+)'/.exec((err as Error).message)?.[1];
    if (unknown) {
      const suggestion = didYouMean(unknown.replace(/^-+/, ""), Object.keys(OPTIONS));
      throw new UsageError(`unknown option ${unknown}${suggestion ? ` (did you mean --${suggestion}?)` : ""}`);
    }
    throw new UsageError((err as Error).message);
  }
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [command, sub, fileArg] = positionals;
  if (values.version || command === "version") {
    console.log(packageVersion);
    return 0;
  }
  if (values.help || command === "help" || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new ConfigError(`--port: "${values.port}" is not a port number`);

  switch (command) {
    case "start": {
      const settings = loadSettings({ file: values.config, portOverride: port });
      return start(settings, parseWorkers(values.workers ?? settings.server.workers));
    }
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
    case "import-litellm": {
      if (!values.from) {
        console.error("usage: gatehouse import-litellm --from <LiteLLM database URL> [--litellm-salt-key K] [--config FILE]");
        return 2;
      }
      const settings = loadSettings({ file: values.config });
      if (settings.embedded) throw new ConfigError("gatehouse import-litellm needs DATABASE_URL: the gateway's own Postgres to import into");
      await ensureDatabaseExists(settings.databaseListenUrl);
      await migrateDirect(settings.databaseListenUrl);
      const masterKey = settings.masterKey ?? loadOrCreateMasterKey(settings.dataDir).key;
      const seal = new CredentialSeal(settings.credentials.saltKey ?? masterKey, settings.credentials.previousSaltKey);
      const litellmSaltKey = values["litellm-salt-key"] ?? process.env.LITELLM_SALT_KEY;
      const source = createPool(values.from, { max: 1, applicationName: "gatehouse-import-source" });
      const target = createPool(settings.databaseUrl, { max: 1, applicationName: "gatehouse-import" });
      try {
        const report = await importLiteLLM(source, { transaction: (work) => inTransaction(target, work) }, { litellmSaltKey, seal });
        console.log(
          `imported ${report.teams.imported} of ${report.teams.read} teams, ${report.users.imported} of ${report.users.read} users, ${report.keys.imported} of ${report.keys.read} keys (${report.keys.skipped} not imported: already here, of a team that is not, or not a sha256 hash), ${report.models.imported} of ${report.models.read} models; ${report.events} event(s) told the running replicas`,
        );
        for (const m of report.models.skipped) console.log(`model ${m.model_name} not imported: ${m.reason}`);
        if (report.models.droppedFields.length > 0) console.log(`litellm_params fields Gatehouse does not use, not imported: ${report.models.droppedFields.join(", ")}`);
        return 0;
      } finally {
        await source.end();
        await target.end();
      }
    }
    case "models": {
      if (sub !== "reseal") {
        console.error("usage: gatehouse models reseal [--config FILE]");
        return 2;
      }
      const settings = loadSettings({ file: values.config });
      if (settings.embedded) throw new ConfigError("gatehouse models reseal needs DATABASE_URL (the embedded database is in use by the running gateway)");
      const masterKey = settings.masterKey ?? loadOrCreateMasterKey(settings.dataDir).key;
      const pool = createPool(settings.databaseUrl, { max: 1, applicationName: "gatehouse-reseal" });
      try {
        const count = await resealCredentials(pool, new CredentialSeal(settings.credentials.saltKey ?? masterKey, settings.credentials.previousSaltKey));
        console.log(`resealed ${count} model credential(s) with the current salt key`);
        return 0;
      } finally {
        await pool.end();
      }
    }
    case "lineage": {
      if (sub !== "renew") {
        console.error("usage: gatehouse lineage renew [--config FILE]");
        return 2;
      }
      const settings = loadSettings({ file: values.config });
      if (settings.embedded) throw new ConfigError("gatehouse lineage renew needs DATABASE_URL (the embedded database is in use by the running gateway)");
      const pool = createPool(settings.databaseListenUrl, { max: 1, applicationName: "gatehouse-lineage" });
      try {
        const token = await renewLineage(pool);
        console.log(`the database is a new history (lineage token ${token}); every replica follows it within a heartbeat`);
        return 0;
      } finally {
        await pool.end();
      }
    }
    case "config": {
      const file = fileArg ?? values.config;
      if (sub !== "check" || !file) {
        console.error("usage: gatehouse config check FILE [--strict]");
        return 2;
      }
      if (values.strict && values["env-optional"]) throw new UsageError("config check: --strict refuses unset os.environ/ variables, --env-optional allows them; give one");
      // A file under edit is checked where its secrets are not set: those are listed, not refused, unless --strict.
      const settings = loadSettings({ file, envOptional: values.strict !== true });
      for (const warning of settings.warnings) console.warn(`warning: ${warning}`);
      console.log(`${settings.source}: ok (${settings.models.length} model deployments)`);
      const unset = unsetByVariable(settings.unsetVariables);
      if (unset.length > 0) {
        console.log("set before starting (not set here; without them the start fails, as does config check --strict):");
        const width = Math.max(...unset.map((u) => u.variable.length));
        for (const u of unset) console.log(`  ${u.variable.padEnd(width)}  ${u.fields.join(", ")}`);
      }
      return 0;
    }
    default: {
      const suggestion = didYouMean(command, COMMANDS);
      console.error(`gatehouse: unknown command "${command}"${suggestion ? ` (did you mean "${suggestion}"?)` : ""}\n\n${USAGE}`);
      return 2;
    }
  }
}

/** Each unset variable once, with every field that reads it, in the file's order. */
function unsetByVariable(unset: Settings["unsetVariables"]): Array<{ variable: string; fields: string[] }> {
  const byVariable = new Map<string, string[]>();
  for (const { variable, field } of unset) byVariable.set(variable, [...(byVariable.get(variable) ?? []), field]);
  return [...byVariable].map(([variable, fields]) => ({ variable, fields }));
}

function parseWorkers(value: string | number): number {
  try {
    return parseWorkerCount(value);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function start(configured: Settings, workers: number): Promise<number> {
  const logger = createLogger();
  const worker = cluster.isWorker ? new WorkerLink(workerIndex() ?? 0) : undefined;
  // Every worker is a replica of its own (caches, LISTEN connection, spend batches): its id says which.
  const settings = worker ? { ...configured, replicaId: `${configured.replicaId}-w${worker.index}` } : configured;
  if (!worker) for (const warning of settings.warnings) logger.warn(warning);
  if (workers > 1 && !worker && settings.embedded) {
    throw new ConfigError(
      "--workers needs DATABASE_URL (and REDIS_URL): the embedded database serves one process; run one worker, or point every worker at a shared Postgres and Redis",
    );
  }
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
  if (workers > 1 && !worker) {
    const code = await superviseWorkers({
      count: workers,
      logger,
      env: { GATEHOUSE_MASTER_KEY: masterKey },
      // A young generation chosen by the operator (command line or NODE_OPTIONS) is kept.
      execArgv: [...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((a) => a.includes("--max-semi-space-size"))
        ? process.execArgv
        : [...process.execArgv, YOUNG_GENERATION_FLAG],
      shutdownDeadlineMs: settings.shutdown.delayMs + settings.shutdown.drainTimeoutMs + SHUTDOWN_MARGIN_MS * 2,
    });
    await flushLogs(logger);
    process.exit(code);
  }
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway({ settings, masterKey, logger, worker });
  } catch (err) {
    // Everything it opened is closed by now: say what failed, in one line, and exit so a supervisor sees it.
    const line = startFailure(err, settings);
    logger.fatal({ err: (err as Error).message }, line);
    await flushLogs(logger);
    console.error(`gatehouse: ${line}`);
    process.exit(err instanceof ConfigError ? 78 : 1);
  }
  // Signal handlers first, then the line that says the replica is up: a supervisor (or a test) that stops the
  // replica as soon as it reads that line must find them installed.
  const stopped = waitForSignal(gateway.close, logger, settings.shutdown.delayMs + settings.shutdown.drainTimeoutMs + SHUTDOWN_MARGIN_MS);
  // Under --workers the primary says "gatehouse is listening" once every worker does.
  logger.info(
    { url: gateway.url, port: gateway.port, config: settings.source, models: [...new Set(settings.models.map((m) => m.modelName))], ...(worker ? { worker: worker.index } : {}) },
    worker ? "worker is listening" : "gatehouse is listening",
  );
  const clean = await stopped;
  await flushLogs(logger);
  // Exit explicitly: a socket some library failed to close (pg-listen can leak one when closed in the
  // middle of a reconnect) must not keep a replica that has finished shutting down alive.
  process.exit(clean ? 0 : 1);
}

/** Flushes the log, but never waits on a reader that went away (`gatehouse start | head`): at most 1 s. */
function flushLogs(logger: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 1_000);
    timer.unref();
    try {
      logger.flush(() => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      resolve();
    }
  });
}

/** What failed at start, and what to do about it, in one line. */
function startFailure(err: unknown, settings: Settings): string {
  const e = err as Error & { code?: string; syscall?: string };
  if (err instanceof ConfigError) return e.message;
  if (e.code === "EADDRINUSE") return `cannot listen on port ${settings.port}: it is in use by another process; stop it, or choose another port with --port or PORT`;
  if (e.code === "EACCES" && e.syscall === "listen") return `cannot listen on port ${settings.port}: permission denied; choose a port above 1023 with --port or PORT`;
  const where = (url: string) => {
    try {
      const u = new URL(url);
      return `${u.hostname}:${u.port || 5432}`;
    } catch {
      return "the configured address";
    }
  };
  if (e.code === "ECONNREFUSED" || e.code === "ENOTFOUND" || e.code === "ETIMEDOUT" || /connect|terminat|timeout/i.test(e.message)) {
    return `cannot reach Postgres at ${settings.embedded ? "the embedded database" : where(settings.databaseListenUrl)} (${e.code ?? e.message}); start it, or fix DATABASE_URL`;
  }
  if (e.code === "28P01" || e.code === "28000") return `Postgres refused the credentials in DATABASE_URL (${e.message})`;
  return `start failed: ${e.message}${e.code ? ` (${e.code})` : ""}`;
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
    // A worker whose primary is gone (killed) stops too: no orphan keeps serving where no supervisor sees it.
    if (cluster.isWorker) process.on("disconnect", () => stop("primary gone"));
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`gatehouse: ${err.message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
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
