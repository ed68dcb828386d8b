/**
 * A replica-local membership filter (a Bloom filter) of every token hash that can authenticate: current and
 * deprecated keys. A token it has never seen is answered 401 without a database round trip, so a flood of
 * random keys costs a hash and a few bit reads, not two Postgres queries each (docs/security.md).
 *
 * Hand-written rather than a library: the members are already sha256 hashes, uniformly distributed, so the
 * k bit positions come straight from their hex digits (double hashing) with no hashing of our own.
 * A filter only ever answers "certainly not" or "maybe"; "maybe" goes on to L2 and Postgres as before.
 */
export class TokenFilter {
  private readonly bits: Uint32Array;
  private readonly m: number;
  private readonly k: number;
  private members = 0;

  /** Sized for `capacity` members at `falsePositiveRate` (0.1 %: 1.8 MB for a million keys). */
  constructor(
    readonly capacity: number,
    falsePositiveRate = 0.001,
  ) {
    const m = Math.ceil((-capacity * Math.log(falsePositiveRate)) / (Math.LN2 * Math.LN2));
    this.m = Math.max(1_024, m);
    this.k = Math.max(1, Math.min(16, Math.round((this.m / capacity) * Math.LN2)));
    this.bits = new Uint32Array(Math.ceil(this.m / 32));
  }

  get size(): number {
    return this.members;
  }

  get bytes(): number {
    return this.bits.byteLength;
  }

  add(tokenHash: string): void {
    const [h1, h2] = seeds(tokenHash);
    for (let i = 0; i < this.k; i++) {
      const bit = (h1 + i * h2) % this.m;
      this.bits[bit >>> 5]! |= 1 << (bit & 31);
    }
    this.members++;
  }

  mayContain(tokenHash: string): boolean {
    const [h1, h2] = seeds(tokenHash);
    for (let i = 0; i < this.k; i++) {
      const bit = (h1 + i * h2) % this.m;
      if ((this.bits[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

/** Two 32-bit numbers from a hex sha256 (the second odd, so the probe sequence covers the table). */
function seeds(tokenHash: string): [number, number] {
  return [Number.parseInt(tokenHash.slice(0, 8), 16) >>> 0, (Number.parseInt(tokenHash.slice(8, 16), 16) | 1) >>> 0];
}
