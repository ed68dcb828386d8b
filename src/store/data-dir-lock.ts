import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { ConfigError } from "../config/settings.js";

/**
 * One process per embedded database. Two `gatehouse start`s on one data directory would each open their own
 * PGlite over the same files and silently lose each other's writes, so the second refuses, naming the
 * directory and the process that holds it. A lock left by a process that no longer runs (killed) is stale
 * and taken over.
 */
export interface DataDirLock {
  release(): void;
}

export function lockDataDir(dataDir: string): DataDirLock {
  const file = path.resolve(dataDir, "gatehouse.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return {
        release() {
          try {
            if (readFileSync(file, "utf8").trim() === String(process.pid)) unlinkSync(file);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST") throw err;
      const holder = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isRunning(holder)) {
        throw new ConfigError(
          `the embedded database in ${path.resolve(dataDir)} is in use by process ${holder} (lock file ${file}); stop that gateway, or give this one another GATEHOUSE_DATA_DIR, or set DATABASE_URL to share a Postgres`,
        );
      }
      // Stale: its process is gone.
      unlinkSync(file);
    }
  }
  throw new ConfigError(`could not lock ${file}`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}
