import type { Switch } from "./checker.js";
import type { AdminKind, AdminOp, CommittedEvent } from "./history.js";
import { eventKey, generationOf, type Matching } from "./matching.js";
import { type KeyState, Model, type ModelView, Timeline } from "./model.js";
import type { ViolationLog } from "./violations.js";

/** A committed change with the request it belongs to, dated by its commit. */
export interface Change {
  event: CommittedEvent;
  op: AdminOp;
  /** When it committed. */
  at: number;
  /** The latest it may have committed: its answer came after the COMMIT; a request that never got one is bounded by the end of the run. */
  atLatest: number;
}

/**
 * The sequential history: each change, in commit order (generation, then id), with the meaning its request gave
 * it. A lossy failover starts a segment: the changes its primary lost held until the switch, and from the switch
 * on the model is the surviving history (every change that was not lost). `judge` sees each change in its own
 * segment, against the model of the changes before it, before the model takes it; windows of history are drawn
 * from the segment being built meanwhile.
 */
export function buildModel(
  events: CommittedEvent[],
  matching: Matching,
  switches: Switch[],
  log: ViolationLog,
  judge: (change: Change, model: Model) => void,
): { model: Model; view: ModelView } {
  const eventByKey = new Map(events.map((e) => [eventKey(e), e]));
  const applied = [...matching.owner.entries()].map(([k, op]) => [eventByKey.get(k)!, op] as const).sort(([a], [b]) => generationOf(a) - generationOf(b) || a.id - b.id);
  const lossyGens = new Set(events.filter((e) => e.lost).map(generationOf));
  const cuts = switches.filter((s) => lossyGens.has(s.gen - 1)).sort((a, b) => a.at - b.at);
  const segments: Array<{ from: number; model: Model }> = [];
  let model = new Model();
  for (let k = 0; k <= cuts.length; k++) {
    const firstGen = k === 0 ? Number.NEGATIVE_INFINITY : cuts[k - 1]!.gen;
    const lastGen = k < cuts.length ? cuts[k]!.gen - 1 : Number.POSITIVE_INFINITY;
    const own = (e: CommittedEvent) => generationOf(e) >= firstGen && generationOf(e) <= lastGen;
    model = new Model();
    log.view = model;
    for (const [e, op] of applied) {
      if (e.lost && !own(e)) continue;
      const change: Change = { event: e, op, at: e.at, atLatest: op.status >= 200 && op.status < 300 ? Math.max(e.at, op.complete) : Number.POSITIVE_INFINITY };
      if (own(e)) judge(change, model);
      APPLY[op.kind](model, change);
    }
    segments.push({ from: k === 0 ? Number.NEGATIVE_INFINITY : cuts[k - 1]!.at, model });
  }
  const view = segments.length === 1 ? model : new Timeline(segments);
  log.view = view;
  return { model, view };
}

/** What one change of a kind does to the model. */
type Apply = (model: Model, change: Change) => void;

const unchanged: Apply = () => {};

/** The keys a request's tokens name in the model so far (a delete may name two). */
export function keysNamed(model: Model, op: AdminOp): KeyState[] {
  const named = op.addressed.filter((t) => model.tokens.has(t));
  return [...new Set(named.map((t) => model.keyOf(t)!))];
}

/** The key a regenerate rotates, if its token named one and it issued a new token. */
export function rotatedKey(model: Model, op: AdminOp): KeyState | undefined {
  const key = keysNamed(model, op)[0];
  return key && op.newToken ? key : undefined;
}

export function parseGrace(grace: string | undefined): number {
  const m = /^(\d+)([smhd])$/.exec(grace ?? "0s");
  if (!m) return 0;
  return Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}

const rotate: Apply = (model, { op, at, atLatest }) => {
  const key = rotatedKey(model, op);
  if (!key) return;
  const graceMs = parseGrace(op.grace);
  const oldState = model.tokens.get(key.current)!;
  oldState.currentUntil = at;
  oldState.currentUntilLatest = atLatest;
  if (graceMs === 0) model.endToken(key.current, at, atLatest);
  else {
    // Until the rotation commits the old token is simply current: a grace whose end came before the commit (a
    // replica whose Postgres answered seconds late took revoke_at from the row's time) ends at the commit.
    const revokeAt = op.revokeAt ?? at + graceMs;
    model.endToken(key.current, Math.max(revokeAt, at), Math.max(revokeAt, atLatest));
  }
  model.addToken(op.newToken!, key.keyId, at);
  key.tokens.push(op.newToken!);
  key.current = op.newToken!;
};

/** A change of the key(s) its tokens name. */
const keyChange =
  (patch: (op: AdminOp) => { blocked?: boolean; models?: string[]; deleted?: boolean }): Apply =>
  (model, { op, at, atLatest }) => {
    for (const key of keysNamed(model, op)) model.change(key, at, atLatest, patch(op));
  };

/** Deletes every key of a team or a user, at its event's time (replicas refuse them through the owner's record). */
const deleteKeysOf =
  (owner: "team" | "user"): Apply =>
  (model, { op, at, atLatest }) => {
    for (const key of model.keys.values()) if (key[owner] === op[owner] && !key.changes.at(-1)!.deleted) model.change(key, at, atLatest, { deleted: true });
  };

/**
 * The database model: served while it has a deployment. A /model/new whose answer was lost still added a
 * deployment: it is known by its event. The state before the change stays a right answer until it surely
 * committed: its NOTIFY's arrival, else its answer.
 */
const databaseModelChange: Apply = (model, { event, op, at, atLatest }) => {
  const id = op.modelId ?? (op.kind === "model_new" ? `event:${eventKey(event)}` : undefined);
  if (id !== undefined) model.dbModelChange(at, event.committedBy ?? atLatest, op.kind === "model_new" ? { add: id } : { remove: id });
};

/** What each kind of change does to the model: a new kind of admin operation needs its entry. */
const APPLY: Record<AdminKind, Apply> = {
  generate: (model, { op, at }) => {
    if (op.newToken && op.keyId) model.generate(op.newToken, op.keyId, at, op.models ?? [], op.team, op.user);
  },
  regenerate: rotate,
  end_grace: (model, { op, at, atLatest }) => {
    for (const key of keysNamed(model, op)) for (const t of key.tokens) if (t !== key.current) model.endToken(t, at, atLatest);
  },
  block: keyChange(() => ({ blocked: true })),
  unblock: keyChange(() => ({ blocked: false })),
  update: keyChange((op) => ({ models: op.models ?? [] })),
  delete: keyChange(() => ({ deleted: true })),
  // Spend is no part of the model (budgets are judged from the priced requests' answers).
  reset_spend: unchanged,
  // Teams start unblocked and users are created without models: creating one changes no key's answer.
  team_new: unchanged,
  user_new: unchanged,
  team_block: (model, { op, at, atLatest }) => model.teamChange(op.team!, at, atLatest, { blocked: true }),
  team_unblock: (model, { op, at, atLatest }) => model.teamChange(op.team!, at, atLatest, { blocked: false }),
  team_models: (model, { op, at, atLatest }) => model.teamChange(op.team!, at, atLatest, { models: op.models ?? [] }),
  team_delete: deleteKeysOf("team"),
  user_delete: deleteKeysOf("user"),
  user_models: (model, { op, at, atLatest }) => model.userModels(op.user!, at, atLatest, op.models ?? []),
  model_new: databaseModelChange,
  model_delete: databaseModelChange,
  // An update changes no answer (it must still commit).
  model_update: unchanged,
};
