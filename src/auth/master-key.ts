import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Compares a presented bearer with the master key in constant time (both hashed first, so lengths match).
 * Where the key comes from (settings, or the file in the data directory) is config/master-key-file.ts.
 */
export class MasterKey {
  private readonly digest: Buffer;

  constructor(masterKey: string) {
    this.digest = createHash("sha256").update(masterKey).digest();
  }

  /** The same comparison for a bearer already hashed. */
  matchesDigest(presented: Buffer): boolean {
    return timingSafeEqual(this.digest, presented);
  }

  matches(presented: string | undefined): boolean {
    if (!presented) return false;
    return timingSafeEqual(this.digest, createHash("sha256").update(presented).digest());
  }
}
