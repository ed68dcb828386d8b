import { createHash, randomBytes } from "node:crypto";

/** A virtual key is `sk-` plus 192 random bits (base64url): well over the 128 bits required. */
export function generateVirtualKey(): string {
  return `sk-${randomBytes(24).toString("base64url")}`;
}

/** The only form of a key that is ever stored or logged: sha256, lower-case hex. */
export function hashKey(plaintext: string): string {
  return createHash("sha256").update(plaintext).digest("hex");
}

/** LiteLLM's display name: `sk-...` and the last four characters. */
export function keyDisplayName(plaintext: string): string {
  return `sk-...${plaintext.slice(-4)}`;
}

const TOKEN_HASH = /^[0-9a-f]{64}$/;

/** Admin routes accept a key as plaintext or as its hash; plaintext keys start with `sk-`, hashes never do. */
export function toTokenHash(plaintextOrHash: string): string {
  return TOKEN_HASH.test(plaintextOrHash) ? plaintextOrHash : hashKey(plaintextOrHash);
}

/** Custom keys: `sk-` then at least 8 visible characters, no whitespace. */
export const CUSTOM_KEY_PATTERN = /^sk-[\x21-\x7e]{8,256}$/;
