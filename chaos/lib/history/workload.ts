import { setTimeout as sleep } from "node:timers/promises";
import type { Replica } from "../../../test/helpers/cluster.js";
import { chatBody } from "../../../test/helpers/http.js";
import { costOf } from "../../../test/helpers/prices.js";
import { act, DB_MODEL, generate, TEAMS } from "./admin-actions.js";
import { DEFAULT_CHECKER_OPTIONS } from "./checker.js";
import { type AdminKind, type AdminOp, type AuthOp, checkerNow } from "./history.js";
import { pick } from "./pick.js";
import { type AdminChoice, DEFAULT_MIX } from "./profiles.js";
import { ROUTING, type RoutedOp } from "./routing.js";
import { alive, type RunContext } from "./run-setup.js";

/** Requests the authenticating clients keep in flight while they focus on a slowed replica (open loop, authClient). */
const SLOWED_IN_FLIGHT_CAP = 2_000;

/** A key as the clients know it. */
export interface KnownKey {
  keyId: string;
  /** The user it belongs to, if any (a user's delete deletes its keys). */
  user?: string | undefined;
  /** The team it is in, if any (a team's delete deletes its keys). */
  team?: string | undefined;
  /** plaintext → token hash, every token ever issued for the key, oldest first. */
  tokens: Array<{ key: string; token: string }>;
  deleted: boolean;
  /** As the last acknowledged block or unblock left it. */
  blocked: boolean;
}

/** An admin request as recorded, with the plaintext key of a generate or regenerate that answered one. */
export type RecordedAdminOp = AdminOp & { plaintext?: string };

/**
 * The run's clients and what they know: admin clients making random changes (the profile's mix, admin-actions.ts),
 * clients authenticating every token ever issued on every replica, clients spending budget keys and clients of the
 * routed models — every request recorded in the history with its invoke and complete times and its answer.
 */
export class Workload {
  readonly known: KnownKey[] = [];
  /** Teams alive as the client last saw them: the run's fixed ones and those it created and has not deleted. */
  readonly liveTeams: string[] = [...TEAMS];
  teamsMade = 0;
  /** Teams the client last saw blocked (for team_toggle). */
  readonly teamsBlocked = new Set<string>();
  /** Users created by the run and not deleted; a user's delete deletes its keys (one event on the user). */
  readonly liveUsers: string[] = [];
  usersMade = 0;
  /** The key that asks for the database model and the routed ones (generated after the run's first keys, never changed). */
  modelProbe: { key: string; token: string } | undefined;
  /** The database model's deployments the client knows of (from /model/new answers). */
  readonly modelIds: string[] = [];
  /** Authentications sent and not answered yet, every client's: the run waits for them before it checks. */
  readonly inFlight = new Set<Promise<void>>();
  /**
   * Budget keys being spent now: priced requests until the budget has refused them for 3 s (a ledger that forgot
   * spend admits them again), then another.
   */
  readonly budgetKeys: Array<{ key: string; token: string; refusedSince: number | null }> = [];
  /** What one priced request costs. */
  pricedCost = 0;
  private generatingBudgetKey = false;
  /** Budget keys generated so far: every other one has its budget on the priced model (model_max_budget). */
  private budgetKeysMade = 0;
  /** The routed requests, judged by the routing rules (routing.ts). */
  readonly routedOps: RoutedOp[] = [];
  private readonly mix: Record<AdminChoice, number>;
  private readonly mixTotal: number;
  /** Requests for the database model only when the run changes it (a proof about keys needs every request on keys). */
  private readonly probesModels: boolean;

  constructor(readonly ctx: RunContext) {
    this.mix = { ...DEFAULT_MIX, ...ctx.profile.mix };
    this.mixTotal = Object.values(this.mix).reduce((a, b) => a + b, 0);
    this.probesModels = this.mix.model_new > 0;
  }

  /**
   * The run's first records, recorded like every change: its teams, its first keys, the probe key; and what a priced
   * request costs.
   */
  async populate(): Promise<void> {
    const { cluster, profile } = this.ctx;
    for (const team of TEAMS) {
      // Creating a team commits an event the checker must find a request for.
      const op = await this.adminRequest("team_new", cluster.replicas[0]!, "/team/new", { team_id: team }, [`team:${team}`], { team });
      if (op.status !== 200) throw new Error(`creating team ${team} failed: ${op.status}`);
    }
    for (let i = 0; i < profile.keys; i++) await generate(this, cluster.replicas[i % cluster.replicas.length]!);
    const probeOp = await this.adminRequest("generate", cluster.replicas[0]!, "/key/generate", {}, [], { models: [] });
    if (probeOp.status !== 200 || !probeOp.plaintext) throw new Error(`generating the probe key failed: ${probeOp.status}`);
    this.modelProbe = { key: probeOp.plaintext, token: probeOp.newToken! };
    if ((profile.budgetKeys ?? 0) > 0) {
      // Not recorded: it changes nothing the checker follows.
      const res = await this.call(cluster.replicas[0]!, "/v1/chat/completions", this.modelProbe.key, chatBody(DEFAULT_CHECKER_OPTIONS.pricedModel, { max_tokens: 1 }));
      if (res.status !== 200) throw new Error(`a priced request answered ${res.status}`);
      this.pricedCost = costOf(res.body.usage);
    }
  }

  /** Every client, until the run stops. */
  async run(): Promise<void> {
    const { profile } = this.ctx;
    await Promise.all([
      ...Array.from({ length: profile.adminWorkers }, () => this.adminClient()),
      ...Array.from({ length: profile.authWorkers }, () => this.authClient()),
      ...Array.from({ length: (profile.budgetKeys ?? 0) > 0 ? (profile.budgetClients ?? 2) : 0 }, () => this.budgetClient()),
      ...Array.from({ length: profile.routingClients ?? 0 }, () => this.routingClient()),
    ]);
  }

  /** Waits for every authentication still on its way. */
  async drain(): Promise<void> {
    await Promise.all(this.inFlight);
  }

  liveReplicas(): Replica[] {
    return this.ctx.cluster.replicas.filter(alive);
  }

  /** The replicas admin requests go to: those the faults have not drained (all of them if every one is). */
  adminReplicas(): Replica[] {
    const live = this.liveReplicas();
    const preferred = live.filter((r) => !this.ctx.adminAvoid.has(r.name));
    return preferred.length > 0 ? preferred : live;
  }

  async call(replica: Replica, path: string, key: string, body: unknown, headers: Record<string, string> = {}) {
    try {
      const res = await fetch(`${replica.url}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      const json = (await res.json().catch(() => null)) as any;
      return { status: res.status, body: json, eventIds: (res.headers.get("gatehouse-event-id") ?? "").split(",").filter(Boolean).map(Number) };
    } catch {
      return { status: 0, body: null, eventIds: [] as number[] };
    }
  }

  /** One admin request, recorded with its answer. */
  async adminRequest(
    kind: AdminKind,
    replica: Replica,
    path: string,
    body: unknown,
    addressed: string[],
    extra: Partial<AdminOp> = {},
    headers: Record<string, string> = {},
  ): Promise<RecordedAdminOp> {
    const invoke = checkerNow();
    const res = await this.call(replica, path, this.ctx.cluster.masterKey, body, headers);
    const complete = checkerNow();
    const op = this.ctx.history.record<AdminOp>({
      type: "admin",
      kind,
      replica: replica.name,
      invoke,
      complete,
      status: res.status,
      code: res.body?.error?.code ?? undefined,
      addressed,
      eventIds: res.eventIds,
      ...extra,
    });
    if (res.status === 200 && (kind === "generate" || kind === "regenerate") && res.body?.key) {
      op.newToken = res.body.token;
      op.keyId = res.body.key_id;
      if (res.body.revoke_at) op.revokeAt = Date.parse(res.body.revoke_at);
    }
    if (res.status === 200 && kind === "end_grace") op.revoked = (res.body?.revoked ?? []).map((r: { token: string }) => r.token);
    if (res.status === 200 && kind === "model_new" && typeof res.body?.model_id === "string") op.modelId = res.body.model_id;
    return Object.assign(op, { plaintext: res.body?.key as string | undefined });
  }

  private chooseAdmin(): AdminChoice {
    let r = Math.random() * this.mixTotal;
    for (const [k, w] of Object.entries(this.mix) as Array<[AdminChoice, number]>) {
      r -= w;
      if (r < 0) return k;
    }
    return "regenerate";
  }

  /** Random admin changes, each on a live key mostly, on a replica not drained, with the profile's pauses. */
  private async adminClient(): Promise<void> {
    const { control, profile } = this.ctx;
    while (control.running()) {
      const replicas = this.adminReplicas();
      if (replicas.length === 0) {
        await sleep(50);
        continue;
      }
      const live = this.known.filter((k) => !k.deleted);
      const choice = live.length < profile.keys / 2 ? "generate" : this.chooseAdmin();
      await act(this, choice, pick(live), pick(replicas));
      const least = profile.adminPauseMinMs ?? 0;
      await sleep(least + Math.random() * Math.max(0, (profile.adminPauseMs ?? 40) - least));
    }
  }

  /** Authentications of every token ever issued (the newest mostly), on every replica, a few in flight. */
  private async authClient(): Promise<void> {
    const { control, profile, history } = this.ctx;
    /** This client's requests in flight (up to profile.authInFlight). */
    const mine = new Set<Promise<void>>();
    while (control.running()) {
      const replicas = this.liveReplicas();
      if (replicas.length === 0 || this.known.length === 0) {
        await sleep(20);
        continue;
      }
      // Now and then the database model, with a key nothing changes: its answer follows the model's changes only.
      if (this.modelProbe && this.probesModels && Math.random() < 0.12) {
        const replica = pick(replicas);
        const invoke = checkerNow();
        const res = await this.call(replica, "/v1/chat/completions", this.modelProbe.key, chatBody(DB_MODEL));
        history.record<AuthOp>({
          type: "auth",
          replica: replica.name,
          invoke,
          complete: checkerNow(),
          status: res.status,
          code: res.body?.error?.code ?? undefined,
          token: this.modelProbe.token,
          model: DB_MODEL,
        });
        await sleep(Math.random() * 8);
        continue;
      }
      const key = Math.random() < 0.8 ? pick(this.known.filter((k) => !k.deleted).concat(this.known.slice(-4))) : pick(this.known);
      const t = Math.random() < 0.6 ? key.tokens.at(-1)! : pick(key.tokens.slice(-4));
      const slowed = profile.authFocusOnSlowed ? replicas.filter((r) => this.ctx.adminAvoid.has(r.name)) : [];
      const replica = slowed.length > 0 && Math.random() < 0.8 ? pick(slowed) : pick(replicas);
      const probe = this.authenticate(replica, t.token, t.key);
      // Focused clients never wait for an answer: one that waited on a replica just slowed would sit out the first
      // seconds of the fault, the ones in which reads from before a change are still on their way.
      if (slowed.length === 0 && !profile.authFocusOnSlowed) {
        // A token no replica knows waits up to a heartbeat for a catch-up (docs/coherence.md): a client that waited
        // for each answer would spend most of its time on those. A few requests in flight keep it busy.
        this.inFlight.add(probe);
        mine.add(probe);
        void probe.finally(() => {
          this.inFlight.delete(probe);
          mine.delete(probe);
        });
        if (mine.size >= (profile.authInFlight ?? 1)) await Promise.race(mine);
        await sleep(Math.random() * 8);
        continue;
      }
      // A slowed replica answers in seconds: requests that waited for each other would all arrive together,
      // right after a read ends. Arrivals spread over time (open loop) are what a busy replica sees — over the whole
      // of each 3 s read: a cap the arrivals reach early in the read would stall every client until it ends, and the
      // requests that come after a change, the ones that must not join a read from before it, would never be sent.
      this.inFlight.add(probe);
      void probe.finally(() => this.inFlight.delete(probe));
      if (this.inFlight.size > SLOWED_IN_FLIGHT_CAP) await Promise.race(this.inFlight);
      await sleep(Math.random() * 40);
    }
  }

  private async authenticate(replica: Replica, token: string, key: string): Promise<void> {
    const invoke = checkerNow();
    const res = await this.call(replica, "/v1/chat/completions", key, chatBody("mock-gpt"));
    const complete = checkerNow();
    this.ctx.history.record<AuthOp>({ type: "auth", replica: replica.name, invoke, complete, status: res.status, code: res.body?.error?.code ?? undefined, token });
  }

  /** Priced requests of the budget keys being spent, a new budget key whenever one fewer than the profile's is. */
  private async budgetClient(): Promise<void> {
    const { control, profile, history } = this.ctx;
    while (control.running()) {
      const live = this.liveReplicas();
      if (this.budgetKeys.length < (profile.budgetKeys ?? 0) && !this.generatingBudgetKey && live.length > 0) {
        this.generatingBudgetKey = true;
        // A budget of a few dozen requests: spent within seconds, so that every Redis fault meets keys half-way through.
        // Every other one is the key's budget on the priced model alone (model_max_budget), kept by its own ledger.
        const budget = (profile.budgetRequests ?? 30) * this.pricedCost;
        const onModel = this.budgetKeysMade++ % 2 === 1;
        const [limit, recorded] = onModel
          ? [{ model_max_budget: { [DEFAULT_CHECKER_OPTIONS.pricedModel]: { budget_limit: budget } } }, { modelBudget: budget }]
          : [{ max_budget: budget }, { maxBudget: budget }];
        // Told when half of it is spent (soft-budgets.ts).
        const softBudget = budget / 2;
        const body = { ...limit, soft_budget: softBudget };
        const op = await this.adminRequest("generate", pick(this.adminReplicas()), "/key/generate", body, [], { models: [], ...recorded, softBudget }).finally(() => {
          this.generatingBudgetKey = false;
        });
        if (op.status === 200 && op.plaintext) this.budgetKeys.push({ key: op.plaintext, token: op.newToken!, refusedSince: null });
        continue;
      }
      if (this.budgetKeys.length === 0 || live.length === 0) {
        await sleep(50);
        continue;
      }
      const b = pick(this.budgetKeys);
      const replica = pick(live);
      const invoke = checkerNow();
      const res = await this.call(replica, "/v1/chat/completions", b.key, chatBody(DEFAULT_CHECKER_OPTIONS.pricedModel, { max_tokens: 1 }));
      const complete = checkerNow();
      history.record<AuthOp>({
        type: "auth",
        replica: replica.name,
        invoke,
        complete,
        status: res.status,
        code: res.body?.error?.code ?? undefined,
        token: b.token,
        model: DEFAULT_CHECKER_OPTIONS.pricedModel,
        ...(res.status === 200 && res.body?.usage ? { cost: costOf(res.body.usage) } : {}),
      });
      if (res.status === 400) b.refusedSince ??= complete;
      if (res.status === 200) b.refusedSince = null;
      if (b.refusedSince !== null && complete - b.refusedSince > 3_000 && this.budgetKeys.includes(b)) this.budgetKeys.splice(this.budgetKeys.indexOf(b), 1);
      await sleep(Math.random() * (profile.budgetPauseMs ?? 60));
    }
  }

  /**
   * Requests for the routed models on random replicas, with the probe key (never changed): what served each and in
   * how many attempts (routing.ts). Paced, so that a replica counting failures alone takes seconds to see enough.
   */
  private async routingClient(): Promise<void> {
    const { control } = this.ctx;
    while (control.running()) {
      const live = this.liveReplicas();
      if (!this.modelProbe || live.length === 0) {
        await sleep(50);
        continue;
      }
      const replica = pick(live);
      const model = Math.random() < 0.7 ? ROUTING.model : ROUTING.cappedModel;
      const invoke = checkerNow();
      let op: RoutedOp;
      try {
        const res = await fetch(`${replica.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${this.modelProbe.key}`, "content-type": "application/json" },
          body: JSON.stringify(chatBody(model, { max_tokens: 1 })),
          signal: AbortSignal.timeout(15_000),
        });
        await res.arrayBuffer();
        op = { replica: replica.name, invoke, complete: checkerNow(), status: res.status, model };
        if (res.status === 200) {
          op.deployment = res.headers.get("gatehouse-deployment") ?? undefined;
          op.attempts = Number(res.headers.get("gatehouse-attempts") ?? 0);
        }
      } catch {
        op = { replica: replica.name, invoke, complete: checkerNow(), status: 0, model };
      }
      this.routedOps.push(op);
      await sleep(300 + Math.random() * 300);
    }
  }
}
