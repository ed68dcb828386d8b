import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

/**
 * Where the master key comes from when neither GATEHOUSE_MASTER_KEY nor the config sets one. There is no
 * well-known default: one is generated once and kept in `<dataDir>/master_key` (mode 0600), and reused on
 * later starts; the log names the file, never the key. Loading it is start-up configuration, like the rest
 * of the settings; comparing a bearer with it is auth/master-key.ts.
 */
export function loadOrCreateMasterKey(dataDir: string): { key: string; file: string; created: boolean } {
  const file = path.resolve(dataDir, "master_key");
  if (existsSync(file)) {
    const key = readFileSync(file, "utf8").trim();
    if (key.length >= 8) return { key, file, created: false };
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const key = `sk-master-${randomBytes(24).toString("base64url")}`;
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { key, file, created: true };
}
