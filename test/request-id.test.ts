import { describe, expect, it } from "vitest";
import { newRequestId } from "../src/http/request-id.js";

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("request ids", () => {
  it("are UUIDv7: version 7, RFC 9562's variant, the time in the first 48 bits", () => {
    const now = Date.UTC(2026, 10, 27, 12, 0, 0, 123);
    const id = newRequestId(now);
    expect(id).toMatch(V7);
    expect(Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(now);
  });

  it("sort by time, and differ within one millisecond", () => {
    const times = [0, 1, 255, 256, 65_535, 1_700_000_000_000, Date.now(), 2 ** 48 - 1];
    const ids = times.map((t) => newRequestId(t));
    expect([...ids].sort()).toEqual(ids);
    const same = new Set(Array.from({ length: 1_000 }, () => newRequestId(1_700_000_000_000)));
    expect(same.size).toBe(1_000);
  });

  it("carry 74 random bits: every digit after the version varies, the variant's two bits excepted", () => {
    const ids = Array.from({ length: 4_000 }, () => newRequestId(1_700_000_000_000).replace(/-/g, ""));
    for (let digit = 13; digit < 32; digit++) {
      const seen = new Set(ids.map((id) => id[digit]));
      // The variant digit (RFC 9562: 0b10xx) takes 8, 9, a and b; every other digit all sixteen values.
      expect(seen.size, `hex digit ${digit}`).toBe(digit === 16 ? 4 : 16);
    }
  });
});
