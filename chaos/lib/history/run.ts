import { writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { type CheckResult, checkHistory, DEFAULT_CHECKER_OPTIONS, type Violation } from "./checker.js";
import { faultSchedule, runFaults } from "./faults.js";
import { checkFinalState, committedEvents } from "./final-state.js";
import type { Profile } from "./profiles.js";
import { checkRouting, type RoutingSummary } from "./routing.js";
import { flappyDeploymentId, type RunContext, type RunResources, settle, setUpRun, storeProxies, tearDown } from "./run-setup.js";
import { checkSoftBudgets } from "./soft-budgets.js";
import { Workload } from "./workload.js";

/**
 * One history-checker run of a profile (profiles.ts), in its parts: set-up (run-setup.ts: the run's own Postgres
 * and Redis, the fault proxies, three replica processes), the first records (workload.ts populate: teams, keys, the
 * probe key), then the clients (workload.ts) and the faults (faults.ts) together until the run stops; then the
 * check of what was recorded (checker.ts, routing.ts) and of the database's final state (final-state.ts), and the
 * tear-down.
 */
export async function runHistory(profile: Profile, log: (line: string) => void = () => {}, resources: RunResources = {}): Promise<RunReport> {
  const ctx = await setUpRun(profile, faultSchedule(profile), log, resources);
  try {
    const workload = new Workload(ctx);
    await workload.populate();
    await settle(ctx);
    const flappyId = await flappyDeploymentId(ctx);
    ctx.routingUpstream?.flap();
    ctx.canary.start();
    log(`${profile.name}: set up in ${((ctx.control.started - ctx.control.setUpStarted) / 1000).toFixed(1)} s`);
    await Promise.all([runFaults(ctx), workload.run()]);
    await stopClientsAndFaults(ctx, workload);
    return await check(ctx, workload, flappyId);
  } finally {
    ctx.control.stopping = true;
    await tearDown(ctx);
  }
}

/** The clients stopped and their last answers in; every proxy passing again; the last commits' notifications heard. */
async function stopClientsAndFaults(ctx: RunContext, workload: Workload): Promise<void> {
  ctx.control.stopping = true;
  await workload.drain();
  await ctx.canary.stop();
  for (const p of storeProxies(ctx)) {
    p.setMode("pass");
    p.setLatency(0);
  }
  // Notifications of the last commits: on their way still.
  await sleep(300);
}

/** The recorded history judged (checker.ts, routing.ts), the final state compared, and the report. */
async function check(ctx: RunContext, workload: Workload, flappyId: string): Promise<RunReport> {
  const { profile, history, postgres, routingUpstream } = ctx;
  const events = await committedEvents(ctx);
  const { result, model } = checkHistory(
    history.ops,
    events,
    history.faults,
    { ...DEFAULT_CHECKER_OPTIONS, budgetClients: profile.budgetClients ?? 2 },
    history.replicaStarts,
    postgres.switches,
  );
  const routingCheck = routingUpstream
    ? checkRouting({ ops: workload.routedOps, calls: routingUpstream.calls, faults: history.faults, flappyId, tailMs: DEFAULT_CHECKER_OPTIONS.faultTailMs })
    : null;
  if (routingCheck) result.violations.push(...routingCheck.violations);
  const softBudgets = await checkSoftBudgets({
    ops: history.ops,
    faults: history.faults,
    alerts: ctx.alerts.alerts,
    db: postgres.admin,
    flushIntervalMs: DEFAULT_CHECKER_OPTIONS.flushIntervalMs,
    tailMs: DEFAULT_CHECKER_OPTIONS.faultTailMs,
  });
  result.violations.push(...softBudgets.violations);
  // For a closer look at a run: the whole history and the events, as JSON.
  // The Sentinel segment writes next to it (<file>-sentinel.json).
  const dumpTo = process.env.HISTORY_DUMP;
  const dump = dumpTo && (profile.redis === "sentinel" ? dumpTo.replace(/(\.json)?$/, "-sentinel.json") : dumpTo);
  if (dump) writeFileSync(dump, JSON.stringify({ ops: history.ops, events, faults: history.faults, switches: postgres.switches, replicaStarts: history.replicaStarts }));
  const finalState = await checkFinalState(ctx, model);
  result.violations.push(...finalState);
  return {
    profile: profile.name,
    seconds: Math.round((Date.now() - ctx.control.started) / 1000),
    ops: history.ops.length,
    faults_injected: ctx.faultsInjected,
    check: result,
    final_state_mismatches: finalState.length,
    violations: result.violations,
    first_violation_after_ops: result.violations.length === 0 ? null : history.ops.filter((o) => o.invoke <= result.violations[0]!.at).length,
    pg_generations: postgres.gen,
    slow_checker_proxy: ctx.canary.summary(history.faults, DEFAULT_CHECKER_OPTIONS.faultTailMs),
    routing: routingCheck?.summary ?? null,
    soft_budgets: { keys: softBudgets.keys, told: softBudgets.told },
    replica_errors: replicaErrors(ctx),
  };
}

/** How many of the replicas' error lines a report quotes. */
const QUOTED_ERRORS = 20;

/**
 * The replicas' log lines at level error or above (an answer of 500 logs its stack there), the first of them, each
 * with its replica: what a violation that is a gateway bug needs to be found from one failed run.
 */
function replicaErrors(ctx: RunContext): string[] {
  const quoted: string[] = [];
  for (const r of [...ctx.killedReplicas, ...ctx.cluster.replicas]) {
    for (const line of r.output) {
      if (quoted.length >= QUOTED_ERRORS) return quoted;
      if (!/"level":(5|6)\d/.test(line)) continue;
      try {
        const entry = JSON.parse(line) as { time?: number; msg?: string; err?: { message?: string; code?: string; stack?: string } };
        const stack =
          entry.err?.stack
            ?.split("\n")
            .slice(1, 6)
            .map((frame) => frame.trim())
            .join(" < ") ?? "";
        const at = entry.time ? new Date(entry.time).toISOString().slice(11, 23) : "?";
        quoted.push(`${r.name} ${at} ${entry.msg ?? ""}: ${entry.err?.message ?? ""} ${entry.err?.code ?? ""} ${stack}`.trim());
      } catch {
        quoted.push(`${r.name}: ${line.slice(0, 500)}`);
      }
    }
  }
  return quoted;
}

export interface RunReport {
  profile: string;
  seconds: number;
  ops: number;
  faults_injected: Record<string, number>;
  check: CheckResult;
  /** Final state: the database against the model. */
  final_state_mismatches: number;
  violations: Violation[];
  /** Requests recorded up to the first violation (how soon the checker saw it); null with none. */
  first_violation_after_ops: number | null;
  /** Postgres promotions during the run. */
  pg_generations: number;
  /** Round trips through the checker's own Postgres proxies slower than the canary's threshold, outside injected faults (path-canary.ts). */
  slow_checker_proxy: { windows: number; totalMs: number; longestMs: number };
  /** The routing part (routing.ts); null when the profile sends no routed requests. */
  routing: RoutingSummary | null;
  /** Budget keys with a soft budget, and how many of them were told they crossed it. */
  soft_budgets: { keys: number; told: number };
  /** The replicas' first log lines at level error or above, with their stacks (replicaErrors). */
  replica_errors: string[];
}

const percentile = (xs: number[], p: number) => {
  const v = xs.filter((x) => x >= 0).sort((a, b) => a - b);
  return v.length === 0 ? 0 : v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))]!;
};

/** The report table (the README shows the long profile's). */
export function formatReport(r: RunReport): string {
  const c = r.check;
  // No spread: a long run has hundreds of thousands of answers.
  const stale = (xs: number[]) => `${Math.round(percentile(xs, 50))} / ${Math.round(percentile(xs, 99))} / ${Math.round(xs.reduce((a, b) => Math.max(a, b), 0))} ms`;
  const rows: Array<[string, string | number]> = [
    ["profile", `${r.profile} (${r.seconds} s)`],
    ["operations recorded", r.ops],
    ...Object.entries(c.opsByKind)
      .sort()
      .map(([k, n]) => [`  ${k}`, n] as [string, number]),
    ["faults injected", `${Object.values(r.faults_injected).reduce((a, b) => a + b, 0)} (${Object.keys(r.faults_injected).length} kinds)`],
    ...Object.entries(r.faults_injected).map(([k, n]) => [`  ${k}`, n] as [string, number]),
    ["answers checked", c.answersChecked],
    [
      "answers by status",
      Object.entries(c.answersByStatus)
        .map(([s, n]) => `${s}: ${n}`)
        .join(", "),
    ],
    ["rotations refused as conflicting (409, retry)", c.rotationConflicts],
    ["Postgres promotions; changes lost with a primary", `${r.pg_generations}; ${c.lostChanges}`],
    [
      "budget keys: most spent (of the budget; the bound allowed)",
      c.budgets.length === 0
        ? "none"
        : (() => {
            const worst = c.budgets.reduce((a, b) => (b.spent / b.budget > a.spent / a.budget ? b : a));
            const onModel = c.budgets.filter((b) => b.field !== "max_budget").length;
            return `${c.budgets.length} keys (${onModel} on a model); ${Math.round((worst.spent / worst.budget) * 100)} % (${Math.round((worst.allowed / worst.budget) * 100)} %), ${worst.field}`;
          })(),
    ],
    ["soft budgets: budget keys; told they crossed it", `${r.soft_budgets.keys}; ${r.soft_budgets.told}`],
    ["staleness p50 / p99 / max, normal periods", stale(c.staleness.normal)],
    ["staleness p50 / p99 / max, fault periods", stale(c.staleness.fault)],
    [
      "checker's own Postgres proxy slow (> 400 ms) outside faults: windows; total; longest",
      `${r.slow_checker_proxy.windows}; ${(r.slow_checker_proxy.totalMs / 1000).toFixed(1)} s; ${r.slow_checker_proxy.longestMs} ms`,
    ],
    [
      "routing: requests; dead-deployment calls; cooldowns (answers checked against them); capped deployment's busiest minute (bound); most attempts",
      r.routing
        ? `${r.routing.requests}; ${r.routing.deadCalls}; ${r.routing.cooldowns} (${r.routing.checkedAgainstCooldowns}); ${r.routing.cappedMostInAMinute} (${r.routing.cappedAllowed}); ${r.routing.mostAttempts}`
        : "none",
    ],
    ["final-state mismatches", r.final_state_mismatches],
    ["violations", r.violations.length],
  ];
  return ["| what | value |", "|---|---|", ...rows.map(([a, b]) => `| ${a} | ${b} |`)].join("\n");
}

/** A violation as a bug report: what, when, and the requests on that key around it. */
export function formatViolation(v: Violation): string {
  return [`${v.kind}: ${v.message}`, ...v.window.map((l) => `    ${l}`)].join("\n");
}
