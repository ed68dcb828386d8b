import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

/** Compares a presented bearer with the master key in constant time (both hashed first, so lengths match). */
export class MasterKey {
  private readonly digest: Buffer;

  constructor(masterKey: string) {
    this.digest = createHash("sha256").update(masterKey).digest();
  }

  matches(presented: string | undefined): boolean {
    if (!presented) return false;
    return timingSafeEqual(this.digest, createHash("sha256").update(presented).digest());
  }
}

/**
 * There is no well-known default master key. When none is configured, one is generated once and kept in
 * `<dataDir>/master_key` (mode 0600), and reused on later starts; the log names the file, never the key.
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
