import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = path.resolve(fileURLToPath(new URL("..", import.meta.url)));
const resultFile = path.join(root, "bench", "results", "soak-test.json");

interface SoakResult {
  sent: number;
  answered: number;
  errors: { requests: number; changes: number };
  changes: number;
  redisDownMs: number;
  replicas: Array<Record<"sockets" | "postgres" | "rssMb", { first: number; last: number }>>;
}

/**
 * The soak's short profile (`npm run soak` runs it for 30 minutes): the script still runs end to end — three
 * replicas under load, key changes, a Redis restart half-way — and in 20 seconds nothing fails and no replica
 * gains sockets or Postgres connections.
 */
describe("the soak, short", () => {
  it("serves every request and every key change across a Redis restart, and holds its sockets and connections", async () => {
    rmSync(resultFile, { force: true });
    await new Promise<void>((resolve, reject) => {
      execFile(
        process.execPath,
        [path.join(root, "bench", "soak.mjs")],
        { cwd: root, env: { ...process.env, SOAK_MINUTES: "0.34", SOAK_RATE: "150", SOAK_SAMPLE_MS: "1000", SOAK_RESULT: "soak-test" }, timeout: 120_000 },
        (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()),
      );
    });
    const result = JSON.parse(readFileSync(resultFile, "utf8")) as SoakResult;
    rmSync(resultFile, { force: true });
    expect(result.sent).toBeGreaterThan(2_000);
    expect(result.errors).toMatchObject({ requests: 0, changes: 0 });
    expect(result.answered).toBe(result.sent);
    expect(result.changes).toBeGreaterThan(100);
    expect(result.redisDownMs).toBeGreaterThan(0);
    expect(result.replicas).toHaveLength(3);
    for (const replica of result.replicas) {
      expect(replica.sockets.last).toBeLessThanOrEqual(replica.sockets.first + 4);
      expect(replica.postgres.last).toBeLessThanOrEqual(replica.postgres.first + 2);
      expect(replica.rssMb.first).toBeGreaterThan(0);
    }
  }, 150_000);
});
