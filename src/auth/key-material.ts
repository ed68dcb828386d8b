import { createHash, randomBytes } from "node:crypto";

/** A virtual key is `sk-` plus 192 random bits (base64url): well over the 128 bits required. */
export function generateVirtualKey(): string {
  return `sk-${randomBytes(24).toString("base64url")}`;
}

/** The only form of a key that is ever stored or logged: sha256, lower-case hex. */
export function hashKey(plaintext: string): string {
  return createHash("sha256").update(plaintext).digest("hex");
}

/**
 * A presented bearer's sha256, made once per request (or once per connection: http/bearer.ts) and used twice: its
 * bytes against the master key's, its hex as the key's hash.
 */
export class BearerDigest {
  readonly bytes: Buffer;
  readonly hex: string;

  constructor(readonly bearer: string) {
    this.bytes = createHash("sha256").update(bearer).digest();
    this.hex = this.bytes.toString("hex");
  }
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

/**
 * Custom keys: `sk-` then at least 32 visible characters, no whitespace. Keys are stored as an unsalted
 * sha256, so a key must be too long to guess: 32 characters are 128 bits even if they are only hex digits
 * (docs/security.md). Keys Gatehouse generates are `sk-` and 32 base64url characters (192 bits).
 */
export const CUSTOM_KEY_PATTERN = /^sk-[\x21-\x7e]{32,256}$/;
export const CUSTOM_KEY_RULE = 'a custom key must be "sk-" followed by 32 to 256 visible characters (at least 128 bits, even as hex digits)';
