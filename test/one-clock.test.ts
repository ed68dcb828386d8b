import { existsSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { waitFor } from "./helpers/services.js";

/**
 * One clock for validity (docs/coherence.md, invariants 1 and 2): `expires` and `revoke_at` are written by the
 * database's clock and compared with it on every replica, whatever the replica's own wall clock says. Two
 * replicas run under a wall clock shifted by ±30 s (libfaketime, the Debian package `faketime`; the monotonic
 * clock is left alone, as NTP would leave it).
 */
const LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const haveFaketime = existsSync(LIBFAKETIME);
// CI installs faketime (.ci/run), so there the test must run; a developer machine without it skips it.
if (!haveFaketime && process.env.CI) throw new Error(`${LIBFAKETIME} is missing: apt-get install faketime`);

const shifted = (seconds: number) => ({ LD_PRELOAD: LIBFAKETIME, FAKETIME: `${seconds >= 0 ? "+" : ""}${seconds}s`, FAKETIME_DONT_FAKE_MONOTONIC: "1" });
const BOUND_MS = 2_000;

describe.skipIf(!haveFaketime)("replicas whose wall clocks are 30 s off", () => {
  let cluster: Cluster;
  let B: Replica, FAST: Replica, SLOW: Replica;
  beforeAll(async () => {
    cluster = await startCluster({ size: 1 });
    B = cluster.replicas[0]!;
    FAST = await cluster.addReplica("FAST", shifted(30));
    SLOW = await cluster.addReplica("SLOW", shifted(-30));
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("measure the database clock: their offsets are about ∓30 s", async () => {
    const fast = (await FAST.admin("/debug/coherence")).body.db_clock_offset_ms;
    const slow = (await SLOW.admin("/debug/coherence")).body.db_clock_offset_ms;
    expect(Math.abs(fast + 30_000)).toBeLessThan(1_000);
    expect(Math.abs(slow - 30_000)).toBeLessThan(1_000);
  });

  it("a grace period and an expiry end when the database says, on the fast and on the slow replica", async () => {
    const rotating = await B.admin("/key/generate", {});
    const expiring = await B.admin("/key/generate", { duration: "8s" });
    expect(rotating.status).toBe(200);
    expect(expiring.status).toBe(200);
    const regen = await B.admin(`/key/${rotating.body.key}/regenerate`, { grace_period: "8s" });
    expect(regen.status).toBe(200);
    await cluster.settle();
    const revokeAt = Date.parse(regen.body.revoke_at);
    const expiresAt = Date.parse(expiring.body.expires);

    // Well inside both windows: the fast replica (its clock says they ended 22 s ago) still accepts both keys.
    for (const r of [B, FAST, SLOW]) {
      expect(await r.chat(rotating.body.key), `old key on ${r.name}`).toBe(200);
      expect(await r.chat(expiring.body.key), `expiring key on ${r.name}`).toBe(200);
    }
    // After both: the slow replica (its clock says 22 s are left) refuses both within the bound.
    await waitFor(() => Date.now() > Math.max(revokeAt, expiresAt), { timeoutMs: 12_000, intervalMs: 100, what: "the grace and the expiry to pass" });
    for (const r of [B, FAST, SLOW]) {
      await waitFor(async () => (await r.chat(rotating.body.key)) === 401, { timeoutMs: BOUND_MS, intervalMs: 20, what: `${r.name} to refuse the old key` });
      await waitFor(async () => (await r.chat(expiring.body.key)) === 401, { timeoutMs: BOUND_MS, intervalMs: 20, what: `${r.name} to refuse the expired key` });
      expect(await r.chat(regen.body.key), `new key on ${r.name}`).toBe(200);
    }
  }, 30_000);
});

describe("a grace period starts when the rotation commits", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ size: 1 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("a rotation that waited 1.5 s for the event-order lock still gives the old key its whole grace from the commit", async () => {
    /** The scenario's duration, not a wait for something: how long the lock stays held once the rotation waits for it. */
    const LOCK_HELD_MS = 1_500;
    const A = cluster.replicas[0]!;
    const gen = await A.admin("/key/generate", {});
    expect(gen.status).toBe(200);
    // Hold the lock every change takes to append its event (store/event-store.ts), as a burst of other
    // changes would: the rotation's transaction waits for it after writing its rows.
    const holder = new pg.Client({ connectionString: cluster.db.url });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock(7326431905118244)");
      const regen = A.admin(`/key/${gen.body.key}/regenerate`, { grace_period: "5s" });
      // The rotation is seen waiting for the lock; then it is held on for LOCK_HELD_MS more, the wait this test is about.
      await waitFor(async () => (await cluster.pool.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rows.length > 0, {
        what: "the rotation to wait for the event-order lock",
      });
      await new Promise((r) => setTimeout(r, LOCK_HELD_MS));
      await holder.query("COMMIT");
      const res = await regen;
      expect(res.status, res.text).toBe(200);
      const { rows } = await cluster.pool.query<{ committed_ms: number; revoke_ms: number }>(
        `SELECT (extract(epoch FROM e.created_at) * 1000)::float8 AS committed_ms, (extract(epoch FROM d.revoke_at) * 1000)::float8 AS revoke_ms
         FROM gh_key_events e JOIN gh_deprecated_keys d ON d.token = $1 WHERE e.kind = 'regenerate' AND $1 = ANY(e.tokens)`,
        [gen.body.token],
      );
      expect(rows).toHaveLength(1);
      // The event row is written after the lock was granted, right before COMMIT.
      expect(rows[0]!.revoke_ms - rows[0]!.committed_ms).toBeGreaterThanOrEqual(5_000);
      expect(rows[0]!.revoke_ms - rows[0]!.committed_ms).toBeLessThan(5_250);
      expect(Math.abs(Date.parse(res.body.revoke_at) - rows[0]!.revoke_ms)).toBeLessThanOrEqual(1);
    } finally {
      await holder.end();
    }
  }, 30_000);
});
