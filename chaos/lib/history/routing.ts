import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Violation } from "./checker.js";
import { checkerNow, type FaultWindow } from "./history.js";

/**
 * The history checker's routing part (docs/coherence.md, "Routing"): an upstream whose deployments the run makes
 * fail on command, clients sending requests to the models they serve on every replica, and the properties every
 * answer and every upstream call must keep, whatever the faults:
 *
 * - **Cooldowns hold everywhere.** The checker replays the dead deployment's failures, as the upstream saw them, through
 *   the cluster's counting rule (router-fail.lua): the failure that crosses `allowed_fails` starts a cooldown. A
 *   request that began more than the propagation bound after a cooldown started, and before it ended, must not have
 *   been tried on that deployment (it answered from another one, in one attempt). A replica that counted failures
 *   alone (LiteLLM's per-pod state) keeps calling it until it has seen enough failures itself.
 * - **A deployment's rpm is the cluster's.** Calls reaching the capped deployment in any minute are at most its `rpm`,
 *   plus one minute's `rpm` for each Redis fault in that minute (a ledger Redis lost, a replica enforcing its share
 *   alone: docs/limits.md's bounds).
 * - **The attempt budget holds.** No answer took more attempts than one plus `num_retries`.
 *
 * (Budgets through retries are the budget property's: the priced model has a flapping deployment too, so budget keys
 * are retried through the admission.) Periods where Redis was impaired for any replica, and the bound after them, are
 * left out of the cooldown property: routing state is then each replica's own by design, and Redis may have lost it. *
 * Each property is a function in ROUTING_RULES (below), the shape of the checker's RULES (checker.ts); they stay a
 * list of their own, since they judge the routed requests and the upstream's calls, not the history of keys.
 */
export const ROUTING = {
  /** A model of two deployments: "flappy" (dead or alive as the run says) and "steady". */
  model: "routed",
  /** A model of two deployments: "capped" (its own rpm) and "overflow". */
  cappedModel: "routed-capped",
  allowedFails: 3,
  cooldownMs: 5_000,
  numRetries: 2,
  cappedRpm: 40,
  /**
   * A cooldown is held by every replica within this of the failure that started it answering: the replica that got
   * the failure counts it (one Redis call), the cooldown is announced (pub/sub) — milliseconds each, and this much
   * slack for a loaded machine. Within a fault (and its tail) the hard bound: a replica busy recovering from a
   * Postgres failover was once seen to count a failure 570 ms after upstream answered it.
   */
  boundMs: 1_000,
  hardBoundMs: 2_250,
} as const;

/** How long the flapping deployments stay dead, and alive (ms), at most; at least half of it. */
const DEAD_MS = 6_000;
const ALIVE_MS = 4_000;
/** What router-fail.lua counts failures within. */
const FAILURE_WINDOW_MS = 60_000;

export interface RoutedOp {
  replica: string;
  invoke: number;
  complete: number;
  status: number;
  model: string;
  /** Gatehouse-Deployment and Gatehouse-Attempts of a 200. */
  deployment?: string;
  attempts?: number;
}

export interface UpstreamCall {
  /** The upstream model asked for: flappy, steady, capped, overflow, flappy-priced. */
  deployment: string;
  arrivedAt: number;
  answeredAt: number;
  failed: boolean;
}

/** The run's routing upstream: OpenAI's chat, answered by each deployment as the run says. */
export class RoutingUpstream {
  readonly calls: UpstreamCall[] = [];
  /** The flapping deployments answer 500 while this is true. */
  dead = false;
  url = "";
  private server: http.Server | null = null;
  private flapping: NodeJS.Timeout | null = null;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const arrivedAt = checkerNow();
        let model = "";
        try {
          model = String(JSON.parse(Buffer.concat(chunks).toString("utf8")).model ?? "");
        } catch {
          // Not JSON: answered as a bad request below.
        }
        const failed = this.dead && model.startsWith("flappy");
        if (failed) {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end("the deployment is down");
        } else {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(
            JSON.stringify({
              id: "chatcmpl-routed",
              object: "chat.completion",
              created: 0,
              model,
              choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
              usage: { prompt_tokens: 8, completion_tokens: 1, total_tokens: 9 },
            }),
          );
        }
        this.calls.push({ deployment: model, arrivedAt, answeredAt: checkerNow(), failed });
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  /** Flaps the flapping deployments: dead for a few seconds, alive for a few, until stopped. */
  flap(): void {
    const next = () => {
      this.dead = !this.dead;
      const most = this.dead ? DEAD_MS : ALIVE_MS;
      this.flapping = setTimeout(next, most / 2 + Math.random() * (most / 2));
    };
    this.flapping = setTimeout(next, ALIVE_MS / 2);
  }

  async close(): Promise<void> {
    if (this.flapping) clearTimeout(this.flapping);
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** The models and router settings the routing part adds to the run's config. */
export function routingConfig(upstreamUrl: string, pricedModel: { model_name: string; litellm_params: Record<string, unknown> }) {
  const at = (model: string, extra: Record<string, unknown> = {}) => ({ model: `openai/${model}`, api_base: upstreamUrl, api_key: "routing-upstream", ...extra });
  return {
    model_list: [
      { model_name: ROUTING.model, litellm_params: at("flappy") },
      { model_name: ROUTING.model, litellm_params: at("steady") },
      { model_name: ROUTING.cappedModel, litellm_params: at("capped", { rpm: ROUTING.cappedRpm }) },
      { model_name: ROUTING.cappedModel, litellm_params: at("overflow") },
      // The budget keys' model, retried through the admission while this one is down (same prices).
      {
        model_name: pricedModel.model_name,
        litellm_params: at("flappy-priced", {
          input_cost_per_token: pricedModel.litellm_params.input_cost_per_token,
          output_cost_per_token: pricedModel.litellm_params.output_cost_per_token,
        }),
      },
    ],
    router_settings: { allowed_fails: ROUTING.allowedFails, cooldown_time: ROUTING.cooldownMs / 1000, num_retries: ROUTING.numRetries },
  };
}

export interface RoutingSummary {
  requests: number;
  /** Failed calls to the dead deployment, and the cooldowns they started (as the cluster's rule counts). */
  deadCalls: number;
  cooldowns: number;
  /** Answers checked against a cooldown (begun after its bound, before its end, no Redis fault near). */
  checkedAgainstCooldowns: number;
  /** The most calls the capped deployment got in a minute, and what the bound allowed there. */
  cappedMostInAMinute: number;
  cappedAllowed: number;
  mostAttempts: number;
}

export interface RoutingInput {
  ops: RoutedOp[];
  calls: UpstreamCall[];
  faults: FaultWindow[];
  /** The flapping deployment's id, as Gatehouse-Deployment names it. */
  flappyId: string;
  tailMs: number;
}

/** What the routing rules read, and where they report. */
interface RoutingContext extends RoutingInput {
  violations: Violation[];
  /** Filled in by the rules as they go. */
  summary: RoutingSummary;
  /** Spans around each fault where Redis was impaired for some replica: from the bound before it to its tail after. */
  redisFaults: Array<{ from: number; to: number }>;
  nearRedisFault(from: number, to: number): boolean;
  /** Was `t` within a fault or its tail? */
  duringFault(t: number): boolean;
}

/** A routing rule: one property of the list above, judged on the whole run. */
type RoutingRule = (ctx: RoutingContext) => void;

/** The routing rules, in the order they run; a new one is a function and an entry here. */
export const ROUTING_RULES: RoutingRule[] = [cooldownsHoldEverywhere, deploymentRpmIsTheClusters, attemptBudgetHolds];

export function checkRouting(input: RoutingInput): { violations: Violation[]; summary: RoutingSummary } {
  const { ops, faults, tailMs } = input;
  const redisFaults = faults.filter((f) => f.redisImpaired).map((f) => ({ from: f.start - ROUTING.boundMs, to: (Number.isFinite(f.end) ? f.end : checkerNow()) + tailMs }));
  const ctx: RoutingContext = {
    ...input,
    violations: [],
    summary: { requests: ops.length, deadCalls: 0, cooldowns: 0, checkedAgainstCooldowns: 0, cappedMostInAMinute: 0, cappedAllowed: ROUTING.cappedRpm, mostAttempts: 0 },
    redisFaults,
    nearRedisFault: (from, to) => redisFaults.some((w) => w.from <= to && w.to >= from),
    duringFault: (t) => faults.some((f) => f.start <= t && (Number.isFinite(f.end) ? f.end : checkerNow()) + tailMs >= t),
  };
  for (const rule of ROUTING_RULES) rule(ctx);
  return { violations: ctx.violations, summary: ctx.summary };
}

/**
 * Cooldowns hold everywhere: the dead deployment's failures, as the upstream answered them, replayed through the
 * cluster's counting rule (router-fail.lua) give when each cooldown started; a request that began more than the
 * bound after that and before the cooldown ended must not have been tried on it.
 */
function cooldownsHoldEverywhere({ ops, calls, flappyId, violations, summary, nearRedisFault, duringFault }: RoutingContext): void {
  const failures = calls.filter((c) => c.deployment === "flappy" && c.failed).sort((a, b) => a.answeredAt - b.answeredAt);
  const cooldowns: Array<{ start: number; end: number }> = [];
  let count = 0;
  let windowEnd = 0;
  let coolingUntil = 0;
  let last = Number.NEGATIVE_INFINITY;
  for (const f of failures) {
    const t = f.answeredAt;
    // Redis impaired since the last failure (or now): what it counted may be lost; replicas counted alone meanwhile.
    if (nearRedisFault(last, t)) {
      count = 0;
      windowEnd = 0;
      coolingUntil = 0;
      last = t;
      continue;
    }
    last = t;
    if (t > windowEnd) count = 0;
    count++;
    if (count === 1) windowEnd = t + FAILURE_WINDOW_MS;
    if (coolingUntil > t || count <= ROUTING.allowedFails) continue;
    cooldowns.push({ start: t, end: t + ROUTING.cooldownMs });
    coolingUntil = t + ROUTING.cooldownMs;
    count = 0;
    windowEnd = 0;
  }
  let checked = 0;
  const routed = ops.filter((o) => o.model === ROUTING.model && o.status === 200).sort((a, b) => a.invoke - b.invoke);
  for (const c of cooldowns) {
    for (const op of routed) {
      const bound = duringFault(op.invoke) ? ROUTING.hardBoundMs : ROUTING.boundMs;
      if (op.invoke < c.start + bound || op.invoke > c.end - ROUTING.boundMs) continue;
      if (nearRedisFault(op.invoke, op.complete)) continue;
      checked++;
      if (op.deployment === flappyId || (op.attempts ?? 1) > 1) {
        violations.push({
          kind: "routed to a cooled-down deployment",
          message: `a request on ${op.replica} began ${Math.round(op.invoke - c.start)} ms after the dead deployment's cooldown started (bound ${bound} ms) and was tried on it (${op.attempts} attempts, served by ${op.deployment})`,
          at: op.invoke,
          window: [
            `${iso(c.start)} cooldown starts: failure ${ROUTING.allowedFails + 1} of the dead deployment within its window, as the upstream answered them`,
            ...failures
              .filter((f) => f.answeredAt >= c.start - 2_000 && f.answeredAt <= op.complete)
              .map((f) => `${iso(f.arrivedAt)}–${iso(f.answeredAt)} the dead deployment failed a call`),
            `${iso(op.invoke)}–${iso(op.complete)} ${op.replica} ${op.model} → ${op.status}, ${op.attempts} attempts, served by ${op.deployment}`,
          ],
        });
      }
    }
  }
  summary.deadCalls = failures.length;
  summary.cooldowns = cooldowns.length;
  summary.checkedAgainstCooldowns = checked;
}

/**
 * A deployment's rpm is the cluster's: the capped deployment's calls in any minute (less a little: admission is
 * dated by Redis, arrival a moment later) are at most its rpm, plus one minute's rpm for each Redis fault in it.
 */
function deploymentRpmIsTheClusters({ calls, violations, summary, redisFaults }: RoutingContext): void {
  const capped = calls
    .filter((c) => c.deployment === "capped")
    .map((c) => c.arrivedAt)
    .sort((a, b) => a - b);
  let most = 0;
  let mostAllowed: number = ROUTING.cappedRpm;
  for (let i = 0, j = 0; i < capped.length; i++) {
    while (j < capped.length && capped[j]! < capped[i]! + FAILURE_WINDOW_MS - 200) j++;
    const inMinute = j - i;
    const allowed = ROUTING.cappedRpm * (1 + redisFaults.filter((w) => w.from <= capped[i]! + FAILURE_WINDOW_MS && w.to >= capped[i]! - FAILURE_WINDOW_MS).length);
    if (inMinute > most) {
      most = inMinute;
      mostAllowed = allowed;
    }
    if (inMinute > allowed) {
      violations.push({
        kind: "deployment rpm exceeded",
        message: `the capped deployment (rpm ${ROUTING.cappedRpm}) got ${inMinute} calls in the minute from ${iso(capped[i]!)}; the bound allowed ${allowed}`,
        at: capped[i]!,
        window: [],
      });
      break;
    }
  }
  summary.cappedMostInAMinute = most;
  summary.cappedAllowed = mostAllowed;
}

/** The attempt budget holds: no answer took more attempts than one plus num_retries. */
function attemptBudgetHolds({ ops, violations, summary }: RoutingContext): void {
  let mostAttempts = 0;
  for (const op of ops) {
    mostAttempts = Math.max(mostAttempts, op.attempts ?? 0);
    if ((op.attempts ?? 0) > 1 + ROUTING.numRetries)
      violations.push({
        kind: "attempt budget exceeded",
        message: `${op.model} on ${op.replica} took ${op.attempts} attempts; num_retries is ${ROUTING.numRetries}`,
        at: op.invoke,
        window: [],
      });
  }
  summary.mostAttempts = mostAttempts;
}

const iso = (t: number) => new Date(t).toISOString().slice(11, 23);
