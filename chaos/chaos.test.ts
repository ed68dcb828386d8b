import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../src/paths.js";
import { formatReport, PROFILES, runChaos } from "./lib/chaos-run.js";

/**
 * The chaos suite (issue 4). `npm test` runs the short profile (about a minute); `npm run chaos` runs the
 * long one (CHAOS_PROFILE=long). Both print the invariant table and write chaos/results/<profile>.json.
 */
const profile = PROFILES[process.env.CHAOS_PROFILE ?? "short"];
if (!profile) throw new Error(`unknown CHAOS_PROFILE ${process.env.CHAOS_PROFILE}`);

describe(`chaos (${profile.name} profile): faults fire while keys rotate and authenticate on three replicas`, () => {
  it(
    "keeps every invariant of COHERENCE.md",
    async () => {
      const report = await runChaos(profile, (line) => process.stderr.write(`[chaos] ${line}\n`));
      const table = formatReport(report);
      process.stdout.write(`\n${table}\n\n`);
      const dir = path.join(packageRoot, "chaos", "results");
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, `${profile.name}.json`), JSON.stringify({ ...report, table }, null, 2));

      expect(report.violations_detail).toEqual([]);
      expect(report.valid_keys_rejected).toBe(0);
      expect(report.revoked_keys_accepted_past_bound).toBe(0);
      expect(report.double_rotations).toBe(0);
      expect(report.acknowledged_writes_lost).toBe(0);
      expect(report.cached_key_5xx_while_postgres_down).toBe(0);
      expect(report.rotations_unresolved).toBe(0);
      expect(report.largest_invalidation_delay_ms).toBeLessThanOrEqual(2_000);
      // The run did something: faults of every kind fired and rotations committed through them.
      expect(Object.keys(report.faults_injected).length).toBeGreaterThanOrEqual(profile.name === "short" ? 8 : 12);
      expect(report.rotations_committed).toBeGreaterThan(50);
      expect(report.auth_requests).toBeGreaterThan(500);
      expect(report.cached_key_probes_while_postgres_down).toBeGreaterThan(0);
      expect(report.rotations_retried).toBeGreaterThan(0);
    },
    profile.durationMs + 120_000,
  );
});
