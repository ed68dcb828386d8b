import { eventKindOf, type AdminOp, type AuthOp, type CommittedEvent, type FaultWindow, type Op } from "./history.js";

/**
 * The history checker. It builds the sequential history of the changes that committed — in commit order, which
 * is event id order — with the meaning each change had for the client that asked for it, and judges every
 * answer of the run against it (docs/coherence.md, "The history checker"):
 *
 * - an authentication that completed at `complete` agrees with the model at some moment of
 *   [invoke − bound, complete]; bound = the normal bound, the hard bound while notifications may be lost, and
 *   since-the-start-of-the-partition while Postgres and Redis are both unreachable (fail static);
 * - an admin 2xx is a change that committed (it has its event) and acted on a token that addressed a key;
 * - an admin error changed nothing (no event is left that only it could explain), and a "not found" was
 *   answered only for a token that addressed no key at some moment of the request;
 * - no change committed that no request explains (a double rotation, a delete nobody asked for);
 * - no 5xx except the documented 503s (a store unreachable, a key changing faster than it can be read);
 * - a key's admitted priced requests cost no more than its budget plus the documented bound (docs/limits.md);
 * - at the end, the database holds exactly the keys the model says, with the model's tokens and fields.
 *
 * Changes are dated by the moment they committed (the checker's own LISTEN hears each NOTIFY, delivered only at
 * COMMIT). After a Postgres failover that lost commits, the model continues from the surviving database's
 * history: the lost changes held until the switch, and from the switch on the state is the survivor's.
 *
 * A violation comes with the window of history that shows it: the requests on that key around it.
 */
export interface CheckerOptions {
  /** Normal staleness bound: notifications flowing (ms). */
  normalBoundMs: number;
  /** Hard bound: notifications lost, the heartbeat is the floor (ms). */
  hardBoundMs: number;
  /** How long after a fault ends it still counts as a fault period (replicas catching up, breakers closing). */
  faultTailMs: number;
  /** Timing tolerance between the database clock and the checker's (same host): ms. */
  clockSlackMs: number;
  /** The model requests are made for; a key limited to other models answers 403. */
  probeModel: string;
  /**
   * How much earlier than its NOTIFY's arrival a change may have committed (ms): Postgres sends a notification to
   * a listener after the COMMIT, and the checker's process may read it a little after a replica's answer that
   * already reflects the change. A change is dated max(its row's created_at, arrival − this).
   */
  notifySlackMs: number;
  /** The priced model budget keys ask for: each admitted request is charged. */
  pricedModel: string;
  /** limits.flush_interval_ms of the run's replicas: the spend a re-seeded ledger may miss (docs/limits.md). */
  flushIntervalMs: number;
  /** Clients that may send one budget key requests at once: each may be admitted while budget was left. */
  budgetClients: number;
}

export const DEFAULT_CHECKER_OPTIONS: CheckerOptions = {
  normalBoundMs: 1_000,
  hardBoundMs: 2_250,
  faultTailMs: 3_000,
  clockSlackMs: 50,
  probeModel: "mock-gpt",
  notifySlackMs: 100,
  pricedModel: "priced",
  flushIntervalMs: 250,
  budgetClients: 3,
};

/**
 * A change's commit time from what was seen of it: the event row's created_at (written before COMMIT) and the
 * arrival of its NOTIFY at the checker (after COMMIT), when it was heard.
 */
export function commitTime(writtenAt: number, heardAt: number | undefined, options: CheckerOptions = DEFAULT_CHECKER_OPTIONS): number {
  return heardAt === undefined ? writtenAt : Math.max(writtenAt, heardAt - options.notifySlackMs);
}

/** A Postgres failover: from `at` on, the primary of generation `gen` (a promoted standby) is the truth. */
export interface Switch {
  gen: number;
  at: number;
}

export interface Violation {
  kind: string;
  message: string;
  at: number;
  /** The shortest window of history that shows it: the requests on the key involved, with times and replicas. */
  window: string[];
}

export interface CheckResult {
  answersChecked: number;
  /** Changes that committed on a primary a failover lost (not in the surviving database). */
  lostChanges: number;
  /** Budget keys and their admitted spend against the bound. */
  budgets: Array<{ token: string; budget: number; spent: number; allowed: number }>;
  violations: Violation[];
  opsByKind: Record<string, number>;
  answersByStatus: Record<string, number>;
  staleness: { normal: number[]; fault: number[] };
  rotationConflicts: number;
  unexplainedEvents: number;
}

interface TokenState {
  token: string;
  keyId: string;
  /** When it became the key's current token. */
  from: number;
  /** When it stopped authenticating (rotated with grace 0, its grace ended, ended early, key deleted). */
  until: number;
  /**
   * The latest it may have stopped: a change's event row is written just before its COMMIT, which lands at the
   * latest when the client gets its answer. Acting on a token is judged against this, so a request that
   * resolved the token just before a concurrent change committed is not blamed.
   */
  untilLatest: number;
  /** When it stopped being the current token (a rotation), Infinity while current. */
  currentUntil: number;
  currentUntilLatest: number;
}

interface KeyChange {
  at: number;
  /** The latest this change may have committed (its request's answer). */
  atLatest: number;
  blocked: boolean;
  models: string[];
  deleted: boolean;
}

export interface KeyState {
  keyId: string;
  team: string | undefined;
  user: string | undefined;
  current: string;
  changes: KeyChange[];
  tokens: string[];
}

export type Expected = 200 | 401 | 403 | 404;

/** A team's state from one change on (teams start unblocked, without models: every model). */
interface TeamChange {
  at: number;
  atLatest: number;
  blocked: boolean;
  models: string[];
}

/** A user's models from one change on (users start without models: every model). */
interface UserChange {
  at: number;
  atLatest: number;
  models: string[];
}

/** The database model's deployments (ids) from one change on. */
interface DbModelChange {
  at: number;
  atLatest: number;
  ids: string[];
}

export class Model implements ModelView {
  /** One history: no switch from one to another. */
  readonly boundaries: number[] = [];
  readonly tokens = new Map<string, TokenState>();
  readonly keys = new Map<string, KeyState>();
  /**
   * Each team's own timeline. A replica caches a team's record apart from its keys' records, so an answer may
   * combine a key's state at one moment with its team's state at another, each within the bound (docs/teams.md).
   */
  readonly teams = new Map<string, TeamChange[]>();
  /** Each user's own timeline (models), cached apart from its keys' records like a team's. */
  readonly users = new Map<string, UserChange[]>();
  /** The run's database model: served while it has a deployment. */
  readonly dbModel: DbModelChange[] = [{ at: Number.NEGATIVE_INFINITY, atLatest: Number.NEGATIVE_INFINITY, ids: [] }];

  userModels(user: string, at: number, atLatest: number, models: string[]): void {
    const list = this.users.get(user) ?? [{ at: Number.NEGATIVE_INFINITY, atLatest: Number.NEGATIVE_INFINITY, models: [] }];
    list.push({ at, atLatest, models });
    this.users.set(user, list);
  }

  userModelsAt(user: string | undefined, t: number): string[] {
    if (user === undefined) return [];
    let models: string[] = [];
    for (const c of this.users.get(user) ?? []) {
      if (c.at <= t) models = c.models;
      else break;
    }
    return models;
  }

  dbModelChange(at: number, atLatest: number, change: { add?: string; remove?: string }): void {
    const ids = this.dbModel.at(-1)!.ids.filter((id) => id !== change.remove);
    if (change.add !== undefined) ids.push(change.add);
    this.dbModel.push({ at, atLatest, ids });
  }

  dbModelServedAt(t: number): boolean {
    let ids: string[] = [];
    for (const c of this.dbModel) {
      if (c.at <= t) ids = c.ids;
      else break;
    }
    return ids.length > 0;
  }

  /** Sorted; computed once per change (a long run asks it for every probe: recomputing it was most of its check). */
  dbModelPoints(): readonly number[] {
    if (this.dbPoints?.changes !== this.dbModel.length) {
      const points = this.dbModel.flatMap((c) => [c.at, c.atLatest]).filter(Number.isFinite);
      this.dbPoints = { changes: this.dbModel.length, points: points.sort((a, b) => a - b) };
    }
    return this.dbPoints.points;
  }
  private dbPoints: { changes: number; points: number[] } | null = null;

  /** At t, is a change written but perhaps not yet committed, before which the model was (or was not) `served`? */
  dbModelMayStillServeAsBefore(t: number, served: boolean): boolean {
    return this.dbModel.some((c, i) => {
      // A change whose answer never came has no known latest commit: it counts from its event alone.
      if (i === 0 || c.at > t || !Number.isFinite(c.atLatest) || t >= c.atLatest) return false;
      const servedBefore = this.dbModel[i - 1]!.ids.length > 0;
      return servedBefore === served;
    });
  }

  teamChange(team: string, at: number, atLatest: number, patch: Partial<Pick<TeamChange, "blocked" | "models">>): void {
    const list = this.teams.get(team) ?? [{ at: Number.NEGATIVE_INFINITY, atLatest: Number.NEGATIVE_INFINITY, blocked: false, models: [] }];
    list.push({ ...list.at(-1)!, ...patch, at, atLatest });
    this.teams.set(team, list);
  }

  teamAt(team: string | undefined, t: number): { blocked: boolean; models: string[] } {
    let state = { blocked: false, models: [] as string[] };
    if (team === undefined) return state;
    for (const c of this.teams.get(team) ?? []) {
      if (c.at <= t) state = c;
      else break;
    }
    return state;
  }

  /**
   * The change points of the records a key's answer depends on besides its own: its team's or its user's (a key
   * of the run has one or the other, never both, so each answer combines two records read at two moments).
   */
  ownerPoints(token: string): number[] {
    const key = this.keyOf(token);
    if (!key) return [];
    const changes: Array<{ at: number }> = key.team !== undefined ? (this.teams.get(key.team) ?? []) : key.user !== undefined ? (this.users.get(key.user) ?? []) : [];
    return changes.map((c) => c.at).filter(Number.isFinite);
  }

  /** When `token` stopped being its key's current token (a rotation) and stopped addressing it: finite ones only. */
  tokenPoints(token: string): number[] {
    const ts = this.tokens.get(token);
    return ts ? [ts.currentUntil, ts.until].filter(Number.isFinite) : [];
  }

  keyOf(token: string): KeyState | undefined {
    const t = this.tokens.get(token);
    return t ? this.keys.get(t.keyId) : undefined;
  }

  private stateAt(key: KeyState, t: number): KeyChange {
    let last = key.changes[0]!;
    for (const c of key.changes) {
      if (c.at <= t) last = c;
      else break;
    }
    return last;
  }

  /** Does `token` address a key at time t (its current token, or a deprecated one in its grace)? */
  addresses(token: string, t: number): boolean {
    const ts = this.tokens.get(token);
    if (!ts || t < ts.from || t >= ts.until) return false;
    return !this.stateAt(this.keys.get(ts.keyId)!, t).deleted;
  }

  isCurrent(token: string, t: number): boolean {
    const ts = this.tokens.get(token);
    return !!ts && this.addresses(token, t) && t < ts.currentUntil;
  }

  /** Might `token` have addressed a key at time t, given how late each change may have committed? */
  mayAddress(token: string, t: number): boolean {
    const ts = this.tokens.get(token);
    if (!ts || t < ts.from || t >= ts.untilLatest) return false;
    return !this.keys.get(ts.keyId)!.changes.some((c) => c.deleted && c.atLatest <= t);
  }

  mayBeCurrent(token: string, t: number): boolean {
    const ts = this.tokens.get(token);
    return !!ts && this.mayAddress(token, t) && t < ts.currentUntilLatest;
  }

  expected(token: string, t: number, model: string): Expected {
    return this.expectedAt(token, t, t, model);
  }

  /**
   * The answer for the key's state at `tKey` and its team's or user's at `tOwner` (a replica may hold each from
   * another moment; `owner` is the model of the history in force at `tOwner`).
   */
  expectedAt(token: string, tKey: number, tOwner: number, model: string, owner: Model = this): Expected {
    const ts = this.tokens.get(token);
    if (!ts || tKey < ts.from || tKey >= ts.until) return 401;
    const key = this.keys.get(ts.keyId)!;
    const s = this.stateAt(key, tKey);
    // The gateway checks the key, then its team, then the model (the key's and its user's lists).
    const team = owner.teamAt(key.team, tOwner);
    if (s.deleted || s.blocked || team.blocked) return 401;
    if (s.models.length > 0 && !s.models.includes(model)) return 403;
    if (team.models.length > 0 && !team.models.includes(model)) return 403;
    const userModels = owner.userModelsAt(key.user, tOwner);
    if (userModels.length > 0 && !userModels.includes(model)) return 403;
    return 200;
  }

  /** Every moment a predicate on `token` (addressing, being current) may change at. */
  keyPoints(token: string): number[] {
    const ts = this.tokens.get(token);
    if (!ts) return [];
    const key = this.keys.get(ts.keyId)!;
    return [ts.from, ts.until, ts.untilLatest, ts.currentUntil, ts.currentUntilLatest, ...key.changes.flatMap((c) => [c.at, c.atLatest])];
  }

  /** Moments at which the expected answer for `token` may change, in [from, to]. */
  changePoints(token: string, from: number, to: number): number[] {
    const ts = this.tokens.get(token);
    if (!ts) return [];
    const points = [ts.from, ts.until, ...this.keys.get(ts.keyId)!.changes.map((c) => c.at), ...this.ownerPoints(token)];
    return points.filter((p) => p > from && p <= to && Number.isFinite(p));
  }

  generate(token: string, keyId: string, at: number, models: string[], team?: string, user?: string): void {
    this.keys.set(keyId, { keyId, team, user, current: token, tokens: [token], changes: [{ at, atLatest: at, blocked: false, models, deleted: false }] });
    this.addToken(token, keyId, at);
  }

  addToken(token: string, keyId: string, at: number): void {
    const forever = Number.POSITIVE_INFINITY;
    this.tokens.set(token, { token, keyId, from: at, until: forever, untilLatest: forever, currentUntil: forever, currentUntilLatest: forever });
  }

  /** Ends a token at `at` (or keeps an earlier end); `atLatest` is the latest the ending change may have committed. */
  endToken(token: string, at: number, atLatest: number): void {
    const ts = this.tokens.get(token)!;
    if (at < ts.until) {
      ts.until = at;
      ts.untilLatest = atLatest;
    }
  }

  change(key: KeyState, at: number, atLatest: number, patch: Partial<Omit<KeyChange, "at" | "atLatest">>): void {
    const last = key.changes.at(-1)!;
    key.changes.push({ ...last, ...patch, at, atLatest });
    if (patch.deleted) for (const t of key.tokens) this.endToken(t, at, atLatest);
  }
}

/** What the rules ask of the model: one Model, or a Timeline of them across lossy failovers. */
export interface ModelView {
  /** Moments at which one history gave way to another (a lossy failover's switch); none without one. */
  readonly boundaries: number[];
  keyOf(token: string): KeyState | undefined;
  addresses(token: string, t: number): boolean;
  isCurrent(token: string, t: number): boolean;
  mayAddress(token: string, t: number): boolean;
  mayBeCurrent(token: string, t: number): boolean;
  expected(token: string, t: number, model: string): Expected;
  expectedAt(token: string, tKey: number, tOwner: number, model: string): Expected;
  changePoints(token: string, from: number, to: number): number[];
  ownerPoints(token: string): number[];
  tokenPoints(token: string): number[];
  keyPoints(token: string): number[];
  dbModelServedAt(t: number): boolean;
  dbModelMayStillServeAsBefore(t: number, served: boolean): boolean;
  /** Sorted ascending; not to be modified. */
  dbModelPoints(): readonly number[];
}

/**
 * The model across lossy Postgres failovers: segment k's model holds every change of the surviving history and
 * the lost changes of its own generations, and is the truth from its start (the switch to the promoted standby)
 * until the next segment's. Each question is asked of the segment in force at the moment asked about.
 */
export class Timeline implements ModelView {
  readonly boundaries: number[];
  constructor(readonly segments: Array<{ from: number; model: Model }>) {
    this.boundaries = segments.slice(1).map((s) => s.from);
  }

  get last(): Model {
    return this.segments.at(-1)!.model;
  }

  private at(t: number): Model {
    let m = this.segments[0]!.model;
    for (const s of this.segments) {
      if (s.from <= t) m = s.model;
      else break;
    }
    return m;
  }

  /** Points of each segment's model that fall within that segment, and every boundary. */
  private union(points: (m: Model) => number[], withBoundaries: boolean): number[] {
    const out: number[] = withBoundaries ? [...this.boundaries] : [];
    this.segments.forEach((s, i) => {
      const to = this.segments[i + 1]?.from ?? Number.POSITIVE_INFINITY;
      for (const p of points(s.model)) if (p >= s.from && p < to) out.push(p);
    });
    return out;
  }

  keyOf(token: string): KeyState | undefined {
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const key = this.segments[i]!.model.keyOf(token);
      if (key) return key;
    }
    return undefined;
  }
  addresses = (token: string, t: number) => this.at(t).addresses(token, t);
  isCurrent = (token: string, t: number) => this.at(t).isCurrent(token, t);
  mayAddress = (token: string, t: number) => this.at(t).mayAddress(token, t);
  mayBeCurrent = (token: string, t: number) => this.at(t).mayBeCurrent(token, t);
  expected = (token: string, t: number, model: string) => this.at(t).expected(token, t, model);
  expectedAt = (token: string, tKey: number, tOwner: number, model: string) => this.at(tKey).expectedAt(token, tKey, tOwner, model, this.at(tOwner));
  changePoints(token: string, from: number, to: number): number[] {
    return this.union((m) => m.changePoints(token, from, to), false).concat(this.boundaries.filter((b) => b > from && b <= to));
  }
  ownerPoints = (token: string) => this.union((m) => m.ownerPoints(token), false);
  tokenPoints = (token: string) => this.union((m) => m.tokenPoints(token), false);
  keyPoints = (token: string) => this.union((m) => m.keyPoints(token), true);
  dbModelServedAt = (t: number) => this.at(t).dbModelServedAt(t);
  dbModelMayStillServeAsBefore = (t: number, served: boolean) => this.at(t).dbModelMayStillServeAsBefore(t, served);
  /** Sorted; the union is made once per state of the segments' models (every probe asks for it). */
  dbModelPoints(): readonly number[] {
    const state = this.segments.map((s) => s.model.dbModel.length).join(",");
    if (this.dbPoints?.state !== state) this.dbPoints = { state, points: this.union((m) => [...m.dbModelPoints()], true).sort((a, b) => a - b) };
    return this.dbPoints.points;
  }
  private dbPoints: { state: string; points: number[] } | null = null;
}

/** Checks a recorded history against the events that committed; never throws on a bad history, it reports. */
export function checkHistory(
  ops: Op[],
  events: CommittedEvent[],
  faults: FaultWindow[],
  options: CheckerOptions = DEFAULT_CHECKER_OPTIONS,
  replicaStarts: Array<{ replica: string; at: number }> = [],
  switches: Switch[] = [],
): { result: CheckResult; model: Model; view: ModelView } {
  const violations: Violation[] = [];
  let model = new Model();
  let view: ModelView = model;
  const admin = ops.filter((o): o is AdminOp => o.type === "admin");
  const auth = ops.filter((o): o is AuthOp => o.type === "auth");
  const result: CheckResult = {
    answersChecked: 0,
    lostChanges: 0,
    budgets: [],
    violations,
    opsByKind: {},
    answersByStatus: {},
    staleness: { normal: [], fault: [] },
    rotationConflicts: 0,
    unexplainedEvents: 0,
  };
  for (const o of ops) {
    const k =
      o.type === "auth"
        ? o.model === options.pricedModel
          ? "priced request (budget key)"
          : "authenticate"
        : o.invalid
          ? `${o.kind} (invalid input)`
          : o.raced
            ? `${o.kind} (raced)`
            : o.kind;
    result.opsByKind[k] = (result.opsByKind[k] ?? 0) + 1;
    result.answersByStatus[String(o.status)] = (result.answersByStatus[String(o.status)] ?? 0) + 1;
  }
  const slack = options.clockSlackMs;
  // The window of history is what a reader needs for the first violations; past 100 it only costs time.
  const violate = (kind: string, message: string, at: number, tokens: string[], replica?: string) =>
    violations.push({ kind, message, at, window: violations.length < 100 ? windowOf(ops, view, tokens, at, replica) : [] });

  // 1. Which request each committed change belongs to. Event ids are issued again after a failover: an event is
  // its generation and its id, and an answer's id names the event of that id that committed during the request.
  const gen = (e: CommittedEvent) => e.gen ?? 0;
  const written = (e: CommittedEvent) => e.writtenAt ?? e.at;
  const keyOfEvent = (e: CommittedEvent) => `${gen(e)}:${e.id}`;
  const eventsById = new Map<number, CommittedEvent[]>();
  for (const e of events) eventsById.set(e.id, [...(eventsById.get(e.id) ?? []), e]);
  const owner = new Map<string, AdminOp>();
  /** The newest generation whose event each request claimed. */
  const claimedGen = new Map<AdminOp, number>();
  const claim = (e: CommittedEvent, op: AdminOp) => {
    if (owner.has(keyOfEvent(e))) return;
    owner.set(keyOfEvent(e), op);
    claimedGen.set(op, Math.max(claimedGen.get(op) ?? 0, gen(e)));
  };
  const byNewToken = new Map<string, CommittedEvent>();
  for (const e of events) {
    if (e.kind === "regenerate") byNewToken.set(e.tokens[1]!, e);
    if (e.kind === "generate") byNewToken.set(e.tokens[0]!, e);
  }
  /** How far a change's commit lies outside a request's span (0 inside). */
  const distance = (e: CommittedEvent, op: AdminOp) => Math.max(0, op.invoke - e.at, written(e) - op.complete);
  for (const op of admin) {
    if (op.status < 200 || op.status >= 300) continue;
    for (const id of op.eventIds) {
      const candidates = eventsById.get(id) ?? [];
      const e = candidates.reduce<CommittedEvent | undefined>((best, c) => (!best || distance(c, op) < distance(best, op) ? c : best), undefined);
      // An id whose event of this request was lost unheard may name another primary's event, seconds away.
      if (e && distance(e, op) <= 2_000) claim(e, op);
    }
    if ((op.kind === "regenerate" || op.kind === "generate") && op.newToken) {
      const e = byNewToken.get(op.newToken);
      if (e) claim(e, op);
    }
  }
  // Events no answered request explains: a request whose outcome the client never learnt (connection lost,
  // 5xx) of the same kind, naming a token of the change, running when it committed.
  const unknownOutcome = admin.filter((o) => o.status === 0 || o.status >= 500);
  const answered = admin.filter((o) => o.status >= 200 && o.status < 300);
  for (const e of events) {
    if (e.lost) result.lostChanges++;
    if (owner.has(keyOfEvent(e)) || e.kind === "expiry") continue;
    const explains = (o: AdminOp) =>
      eventKindOf(o.kind) === e.kind &&
      written(e) >= o.invoke - slack &&
      written(e) <= o.complete + 250 &&
      // An end_grace event names the tokens it revoked, not the one the request named.
      (o.addressed.some((t) => e.tokens.includes(t)) || !!o.revoked?.some((t) => e.tokens.includes(t)) || o.kind === "generate");
    const candidate = unknownOutcome.find(explains);
    if (candidate) {
      claim(e, candidate);
      if (candidate.kind === "regenerate") candidate.newToken = e.tokens[1];
      if (candidate.kind === "generate") candidate.newToken = e.tokens[0];
      continue;
    }
    // A change its primary lost, of a request answered from the new primary: the connection died during COMMIT,
    // the replica found the change absent from the survivor and made it again. The lost one was an attempt of that
    // request, with its own new token (a rotation, a key) if it made one.
    // Or the re-run was refused there (4xx): the surviving history had the key in another state — deleted, never
    // made, made by another lost change — and the request was answered as that history says.
    const retried = e.lost
      ? (answered.find((o) => explains(o) && (claimedGen.get(o) ?? -1) > gen(e)) ?? admin.find((o) => o.status >= 400 && o.status < 500 && !o.invalid && explains(o)))
      : undefined;
    if (retried) {
      const attempt: AdminOp = { ...retried, status: 200, eventIds: [e.id] };
      if (e.kind === "regenerate") attempt.newToken = e.tokens[1];
      if (e.kind === "generate") Object.assign(attempt, { newToken: e.tokens[0], keyId: `lost:${keyOfEvent(e)}` });
      claim(e, attempt);
      continue;
    }
    result.unexplainedEvents++;
    violate("unexplained change", `event ${e.id} (${e.kind}${e.lost ? ", lost in a failover" : ""}) committed at ${fmt(e.at)} but no request explains it`, e.at, e.tokens);
  }

  // 2. The sequential history: each change, in commit order (generation, then id), with the meaning its request
  // gave it. A lossy failover starts a segment: the changes its primary lost held until the switch, and from the
  // switch on the model is the surviving history (every change that was not lost).
  const eventByKey = new Map(events.map((e) => [keyOfEvent(e), e]));
  const applied = [...owner.entries()].map(([k, op]) => [eventByKey.get(k)!, op] as const).sort(([a], [b]) => gen(a) - gen(b) || a.id - b.id);
  const lossyGens = new Set(events.filter((e) => e.lost).map(gen));
  const cuts = switches.filter((s) => lossyGens.has(s.gen - 1)).sort((a, b) => a.at - b.at);
  const segments: Array<{ from: number; model: Model }> = [];
  for (let k = 0; k <= cuts.length; k++) {
    const firstGen = k === 0 ? Number.NEGATIVE_INFINITY : cuts[k - 1]!.gen;
    const lastGen = k < cuts.length ? cuts[k]!.gen - 1 : Number.POSITIVE_INFINITY;
    const own = (e: CommittedEvent) => gen(e) >= firstGen && gen(e) <= lastGen;
    model = new Model();
    view = model;
    for (const [e, op] of applied) if (!e.lost || own(e)) applyChange(e, op, own(e));
    segments.push({ from: k === 0 ? Number.NEGATIVE_INFINITY : cuts[k - 1]!.at, model });
  }
  view = segments.length === 1 ? model : new Timeline(segments);

  /** One change applied to the model being built; its request's rules are checked (`report`) in its own segment. */
  function applyChange(e: CommittedEvent, op: AdminOp, report: boolean): void {
    const at = e.at;
    // The answer came after the COMMIT; a request that never got one is bounded by the end of the run.
    const atLatest = op.status >= 200 && op.status < 300 ? Math.max(at, op.complete) : Number.POSITIVE_INFINITY;
    if (op.kind === "generate") {
      if (op.newToken && op.keyId) model.generate(op.newToken, op.keyId, at, op.models ?? [], op.team, op.user);
      return;
    }
    // Teams start unblocked and users are created without models: creating one changes no key's answer.
    if (op.kind === "team_new" || op.kind === "user_new") return;
    // A user's delete deletes its keys, at the user event's time (replicas refuse them through the user's record).
    if (op.kind === "user_delete") {
      for (const key of model.keys.values()) if (key.user === op.user && !key.changes.at(-1)!.deleted) model.change(key, at, atLatest, { deleted: true });
      return;
    }
    if (op.kind === "team_block" || op.kind === "team_unblock") {
      model.teamChange(op.team!, at, atLatest, { blocked: op.kind === "team_block" });
      return;
    }
    if (op.kind === "team_models") {
      model.teamChange(op.team!, at, atLatest, { models: op.models ?? [] });
      return;
    }
    // A team's delete deletes its keys, at the team event's time (replicas refuse them through the team's record).
    if (op.kind === "team_delete") {
      for (const key of model.keys.values()) if (key.team === op.team && !key.changes.at(-1)!.deleted) model.change(key, at, atLatest, { deleted: true });
      return;
    }
    if (op.kind === "user_models") {
      model.userModels(op.user!, at, atLatest, op.models ?? []);
      return;
    }
    // The database model: served while it has a deployment; an update changes no answer (it must still commit). A
    // /model/new whose answer was lost still added a deployment: it is known by its event. The state before the
    // change stays a right answer until it surely committed: its NOTIFY's arrival, else its answer.
    if (op.kind === "model_new" || op.kind === "model_delete") {
      const id = op.modelId ?? (op.kind === "model_new" ? `event:${keyOfEvent(e)}` : undefined);
      if (id !== undefined) model.dbModelChange(at, e.committedBy ?? atLatest, op.kind === "model_new" ? { add: id } : { remove: id });
      return;
    }
    if (op.kind === "model_update") return;
    const named = op.addressed.filter((t) => model.tokens.has(t));
    // A change acknowledged for a token that addressed no key at any moment of the request.
    for (const t of op.addressed) {
      // The request resolved the token somewhere between its start and its own commit.
      const addressed = someMoment(model, [t], op.invoke - slack, at + slack, (x) => model.mayAddress(t, x));
      if (!addressed && report)
        violate("acted on a token that addressed nothing", `${op.kind} on ${op.replica} committed (event ${e.id}) for ${short(t)}, which addressed no key then`, at, [t]);
    }
    const keys = [...new Set(named.map((t) => model.keyOf(t)!))];
    if (op.kind === "regenerate") {
      const key = keys[0];
      const old = op.addressed[0]!;
      if (!key || !op.newToken) return;
      if (report && !someMoment(model, [old], op.invoke - slack, at + slack, (x) => model.mayBeCurrent(old, x))) {
        violate("double rotation", `regenerate on ${op.replica} committed (event ${e.id}) for ${short(old)}, which was not its key's current token`, at, [old]);
      }
      const graceMs = parseGrace(op.grace);
      const oldState = model.tokens.get(key.current)!;
      oldState.currentUntil = at;
      oldState.currentUntilLatest = atLatest;
      // The grace starts at the commit: after the event row was written, before the answer (`complete`); a
      // replica whose Postgres answers late takes its "now" late in that span.
      const w = written(e);
      if (report && graceMs > 0 && op.revokeAt !== undefined && (op.revokeAt < w + graceMs - slack || op.revokeAt > Math.max(w + 1_000, at + 1_000, op.complete) + graceMs)) {
        violate("grace not counted from the commit", `regenerate on ${op.replica}: revoke_at ${fmt(op.revokeAt)} is not commit ${fmt(at)} + ${op.grace}`, at, [old]);
      }
      if (graceMs === 0) model.endToken(key.current, at, atLatest);
      else {
        // Until the rotation commits the old token is simply current: a grace whose end came before the commit (a
        // replica whose Postgres answered seconds late took revoke_at from the row's time) ends at the commit.
        const revokeAt = op.revokeAt ?? at + graceMs;
        model.endToken(key.current, Math.max(revokeAt, at), Math.max(revokeAt, atLatest));
      }
      model.addToken(op.newToken, key.keyId, at);
      key.tokens.push(op.newToken);
      key.current = op.newToken;
    } else if (op.kind === "end_grace") {
      for (const key of keys) for (const t of key.tokens) if (t !== key.current) model.endToken(t, at, atLatest);
    } else if (op.kind === "block" || op.kind === "unblock") {
      for (const key of keys) model.change(key, at, atLatest, { blocked: op.kind === "block" });
    } else if (op.kind === "update") {
      for (const key of keys) model.change(key, at, atLatest, { models: op.models ?? [] });
    } else if (op.kind === "delete") {
      for (const key of keys) model.change(key, at, atLatest, { deleted: true });
    }
  }

  // 3. Admin answers.
  const owners = new Set(owner.values());
  for (const op of admin) {
    result.answersChecked++;
    const ok = op.status >= 200 && op.status < 300;
    if (op.invalid) {
      // No answer at all (status 0) is the request's replica being killed or cut off by a fault, not an acceptance;
      // outside a fault it would be a crash, and counts.
      const unanswered = op.status === 0 && duringFault(faults, op, options.faultTailMs, () => true);
      if (op.status !== 400 && !unanswered) violate("invalid input not refused", `${op.kind} with invalid input on ${op.replica} answered ${op.status}`, op.complete, op.addressed);
      continue;
    }
    if (ok) {
      const hasEvent = owners.has(op);
      const noEventNeeded =
        op.kind === "reset_spend" ||
        (op.kind === "end_grace" && (op.revoked?.length ?? 0) === 0) ||
        (op.kind === "regenerate" && op.eventIds.length === 0 && !!op.newToken && byNewToken.has(op.newToken));
      // A change acknowledged just before its primary was lost may have gone with it unheard: lost, not a violation.
      const lostWithItsPrimary = faults.some((f) => f.lossFrom !== undefined && op.complete >= f.lossFrom - slack && op.invoke <= (f.lossTo ?? f.end) + slack);
      if (!hasEvent && !noEventNeeded && !lostWithItsPrimary)
        violate("acknowledged change lost", `${op.kind} on ${op.replica} answered ${op.status} but no event committed for it`, op.complete, op.addressed);
      if (op.kind === "reset_spend" || (op.kind === "end_grace" && !hasEvent)) {
        for (const t of op.addressed) {
          if (!someMoment(view, [t], op.invoke - slack, op.complete + slack, (x) => view.mayAddress(t, x)))
            violate("acted on a token that addressed nothing", `${op.kind} on ${op.replica} answered ${op.status} for ${short(t)}, which addressed no key`, op.complete, [t]);
        }
      }
      continue;
    }
    if (op.status === 404) {
      // Every token that authenticates is addressable: "not found" only for a token that addressed nothing at
      // some moment of the request (delete: at least one of its tokens).
      const notFoundSomewhere = op.addressed.some((t) => someMoment(view, [t], op.invoke - slack, op.complete + slack, (x) => !view.addresses(t, x)));
      if (!notFoundSomewhere)
        violate(
          "not found for a token that works",
          `${op.kind} on ${op.replica} answered 404 for ${op.addressed.map(short).join(", ")}, which addressed a key throughout the request`,
          op.complete,
          op.addressed,
        );
      continue;
    }
    if (op.status === 409) {
      // Refusals that change nothing by design: the key changed under the rotation (its fencing token), or another
      // replica holds the rotation lock of this token right now.
      if (op.code === "rotation_conflict" || op.code === "rotation_in_progress") {
        result.rotationConflicts++;
        continue;
      }
      if (op.code === "key_already_rotated") {
        const t = op.addressed[0]!;
        if (!someMoment(view, [t], op.invoke - slack, op.complete + slack, (x) => view.addresses(t, x) && !view.isCurrent(t, x))) {
          violate(
            "refused as already rotated",
            `regenerate on ${op.replica} answered 409 key_already_rotated for ${short(t)}, which was its key's current token throughout`,
            op.complete,
            [t],
          );
        }
        continue;
      }
    }
    if (op.status === 0) continue;
    // A key generated for a user another client was deleting: refused, nothing written (the event check holds).
    if (op.status === 400 && op.kind === "generate" && op.code === "user_deleted") continue;
    // A key's models must lie within its user's and its team's: an update asking for more is refused, nothing written.
    if (op.status === 400 && op.kind === "update" && (op.code === "model_not_allowed_for_user" || op.code === "model_not_in_team")) continue;
    // A key generated for a team another client was deleting: refused, nothing written.
    if (op.status === 400 && op.kind === "generate" && op.code === "team_not_found") continue;
    if (op.status === 503 && (duringFault(faults, op, options.faultTailMs, (f) => f.postgresImpaired) || op.code === "rotation_in_progress")) continue;
    violate("unexpected answer", `${op.kind} on ${op.replica} answered ${op.status} ${op.code ?? ""}`, op.complete, op.addressed);
  }

  // 4. Authentication answers, against the model with the bound that applied.
  // Fail static: the last 200 each replica gave each token, to tell a cached key from an unknown one.
  const lastAccepted = new Map<string, number>();
  // A key's record and its team's are held apart: a change of either may leave the replica without a copy it can
  // serve when Postgres cannot answer.
  // A rotation changes the old token too: the event evicts it, and the replica must read its grace from Postgres.
  // A Postgres failover starts a new epoch on every replica (L1 dropped): it holds nothing from before.
  const changesOfKey = (token: string) => [
    ...(view.keyOf(token)?.changes.map((c) => c.at) ?? []),
    ...view.ownerPoints(token),
    ...view.tokenPoints(token),
    ...view.boundaries,
    ...switches.map((s) => s.at),
  ];
  const priced: AuthOp[] = [];
  for (const op of [...auth].sort((a, b) => a.complete - b.complete)) {
    if (op.status === 0) continue;
    result.answersChecked++;
    if (op.model === options.pricedModel) {
      // A budget key's request: a budget's refusal says the key authenticated; a 503 is right while a fault is in
      // effect (limits fail closed while Redis is unreachable). Otherwise it is judged as an authentication (a
      // budget key lost with its primary stops authenticating).
      if (op.status === 200) priced.push(op);
      if (op.status === 503 && duringFault(faults, op, options.faultTailMs, () => true)) continue;
      const refused = (op.status === 400 && op.code === "budget_exceeded") || (op.status === 429 && op.code === "budget_reserved");
      if (!refused && op.status !== 200 && op.status !== 401 && op.status !== 403) {
        violate(
          "unexpected answer",
          `a priced request of budget key ${short(op.token)} on ${op.replica} answered ${op.status} ${op.code ?? ""}`,
          op.complete,
          [op.token],
          op.replica,
        );
        continue;
      }
      judge(refused ? { ...op, status: 200 } : op, options.pricedModel);
      continue;
    }
    if (op.model !== undefined) {
      checkModelProbe(view, op, faults, options, violate, result);
      continue;
    }
    const cacheKey = `${op.replica}|${op.token}`;
    if (op.status === 503) {
      // With Postgres unreachable a replica serves the keys it holds (fail static): a 503 is right only for a
      // key it does not hold. It holds one it accepted earlier, unless the key changed since (an invalidation
      // evicts it) or the replica restarted.
      const acceptedAt = lastAccepted.get(cacheKey);
      const held =
        acceptedAt !== undefined &&
        op.invoke - acceptedAt < 60_000 &&
        !changesOfKey(op.token).some((c) => c >= acceptedAt - options.hardBoundMs && c <= op.complete) &&
        !replicaStarts.some((r) => r.replica === op.replica && r.at >= acceptedAt - options.hardBoundMs && r.at <= op.complete) &&
        view.expected(op.token, op.invoke, options.probeModel) === 200;
      if (held && op.code === "key_store_unavailable") {
        violate(
          "fail static broken",
          `${op.replica} answered 503 for ${short(op.token)}, a key it accepted at ${fmt(acceptedAt!)} and that has not changed since`,
          op.complete,
          [op.token],
          op.replica,
        );
        continue;
      }
      if (op.code === "key_changing" || duringFault(faults, op, options.faultTailMs, (f) => f.postgresImpaired)) continue;
      violate("unexpected answer", `authentication of ${short(op.token)} on ${op.replica} answered 503 ${op.code ?? ""} with every store reachable`, op.complete, [op.token]);
      continue;
    }
    if (op.status !== 200 && op.status !== 401 && op.status !== 403) {
      violate("unexpected answer", `authentication of ${short(op.token)} on ${op.replica} answered ${op.status} ${op.code ?? ""}`, op.complete, [op.token]);
      continue;
    }
    if (op.status === 200) lastAccepted.set(cacheKey, op.invoke);
    judge(op, options.probeModel);
  }

  /** An answer (200, 401 or 403) against the model, within the bound that applied. */
  function judge(op: AuthOp, probeModel: string): void {
    const inFault = duringFault(faults, op, options.faultTailMs, () => true);
    const staleness = stalenessOf(view, op, probeModel);
    const bound = boundFor(op, faults, options);
    (inFault ? result.staleness.fault : result.staleness.normal).push(Number.isFinite(staleness) ? staleness : -1);
    if (staleness > bound) {
      const now = view.expected(op.token, op.complete, probeModel);
      const what =
        op.status === 200
          ? now === 403
            ? "served a model the key may not use"
            : "accepted a key that was not valid"
          : op.status === 403
            ? "refused a model the key may use"
            : "rejected a valid key";
      violate(
        what,
        `${op.replica} answered ${op.status}${op.code ? ` (${op.code})` : ""} for ${short(op.token)} (request ${fmt(op.invoke)}–${fmt(op.complete)}); the model expected ${now}${Number.isFinite(staleness) ? `, last true ${Math.round(staleness)} ms before the request (bound ${Math.round(bound)} ms)` : " at every moment"}`,
        op.complete,
        [op.token],
        op.replica,
      );
    }
  }

  // 5. Budgets: a key's admitted priced requests cost no more than its budget plus the documented bound.
  checkBudgets(admin, priced, faults, options, violate, result);
  violations.sort((a, b) => a.at - b.at);
  return { result, model, view };
}

/**
 * The spend admitted for each budget key (the cost of its 200 answers) against its budget plus the bound of
 * docs/limits.md: one request's cost beyond the budget for each request admitted while budget was left (at most
 * one per client sending it requests), and, whenever a live ledger is re-seeded from Postgres, the spend Postgres
 * did not have then — what replicas charged in the last flush interval and had not flushed (a Redis restart, a
 * restore or a failover; a replica killed before its flush), spend flushed to a primary a failover lost, and spend
 * charged while Postgres could not take flushes (a failover, an outage shortly before).
 */
function checkBudgets(
  admin: AdminOp[],
  priced: AuthOp[],
  faults: FaultWindow[],
  options: CheckerOptions,
  violate: (kind: string, message: string, at: number, tokens: string[], replica?: string) => void,
  result: CheckResult,
): void {
  const budgets = new Map<string, number>();
  for (const op of admin) if (op.kind === "generate" && op.status === 200 && op.newToken && op.maxBudget !== undefined) budgets.set(op.newToken, op.maxBudget);
  if (budgets.size === 0) return;
  const margin = 500;
  // Spans whose charges a re-seeded ledger may miss, widened back over a Postgres outage that held flushes.
  const spans = faults
    .flatMap((f) => f.spendMayBeForgotten ?? [])
    .map(({ from, to }) => {
      let start = from - options.flushIntervalMs - margin;
      for (const g of faults)
        if (g.postgresImpaired && g.start <= to && g.end + options.faultTailMs + margin >= start) start = Math.min(start, g.start - options.flushIntervalMs - margin);
      return { from: start, to: to + margin };
    });
  const byToken = new Map<string, AuthOp[]>();
  for (const op of priced) byToken.set(op.token, [...(byToken.get(op.token) ?? []), op]);
  for (const [token, budget] of budgets) {
    const admitted = byToken.get(token) ?? [];
    const cost = (op: AuthOp) => op.cost ?? 0;
    const spent = admitted.reduce((a, op) => a + cost(op), 0);
    const maxCost = admitted.reduce((a, op) => Math.max(a, cost(op)), 0);
    const forgotten = spans.reduce((sum, s) => sum + admitted.filter((op) => op.complete >= s.from && op.invoke <= s.to).reduce((a, op) => a + cost(op), 0), 0);
    const allowed = budget + maxCost * options.budgetClients + forgotten;
    result.budgets.push({ token, budget, spent, allowed });
    if (spent > allowed + 1e-9) {
      const last = admitted.at(-1)!;
      violate(
        "budget overspent",
        `budget key ${short(token)} (max_budget ${budget}) was admitted ${admitted.length} priced requests costing ${round(spent)} (${Math.round((spent / budget) * 100)} % of its budget); the bound allows ${round(allowed)} (${round(forgotten)} of it spend a re-seeded ledger may miss)`,
        last.complete,
        [token],
      );
    }
  }
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * A request for the run's database model with a key that never changes: 200 while the model has a deployment,
 * 404 `model_not_found` while it has none, each within the bound of the change (a replica drops the database
 * models on the event and reads them again). A 503 `model_store_unavailable` is the documented answer while the
 * replica cannot vouch for its database models (Postgres or its notifications unreachable).
 */
function checkModelProbe(
  model: ModelView,
  op: AuthOp,
  faults: FaultWindow[],
  options: CheckerOptions,
  violate: (kind: string, message: string, at: number, tokens: string[], replica?: string) => void,
  result: CheckResult,
): void {
  const tokens = [op.token, MODELS];
  if (op.status === 503) {
    if (duringFault(faults, op, options.faultTailMs, (f) => f.postgresImpaired || f.notificationsLost)) return;
    violate("unexpected answer", `a request for ${op.model} on ${op.replica} answered 503 ${op.code ?? ""} with every store reachable`, op.complete, tokens, op.replica);
    return;
  }
  if (op.status !== 200 && !(op.status === 404 && op.code === "model_not_found")) {
    violate("unexpected answer", `a request for ${op.model} on ${op.replica} answered ${op.status} ${op.code ?? ""}`, op.complete, tokens, op.replica);
    return;
  }
  const served = op.status === 200;
  // A change's event is written before its COMMIT, which may come as late as its answer (atLatest): until then a
  // replica may rightly answer as before. (A replica whose Postgres answers slowly holds the event seconds before
  // its COMMIT lands; measuring from the event's own time would blame the others for not seeing it yet.)
  const possible = (t: number) => model.dbModelServedAt(t) === served || model.dbModelMayStillServeAsBefore(t, served);
  const points = model.dbModelPoints(); // sorted ascending
  // The last point at or before the request's start (binary search: a long run has thousands of points).
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid]! <= op.invoke) lo = mid + 1;
    else hi = mid;
  }
  const firstAfterInvoke = lo;
  const duringRequest = () => {
    for (let i = firstAfterInvoke; i < points.length && points[i]! <= op.complete; i++) if (possible(points[i]!) || possible(points[i]! - 1e-3)) return true;
    return false;
  };
  let staleness = Number.POSITIVE_INFINITY;
  if (possible(op.invoke) || possible(op.complete) || duringRequest()) {
    staleness = 0;
  } else {
    for (let i = firstAfterInvoke - 1; i >= 0; i--) {
      if (possible(points[i]! - 1e-3)) {
        staleness = op.invoke - points[i]!;
        break;
      }
    }
  }
  const inFault = duringFault(faults, op, options.faultTailMs, () => true);
  (inFault ? result.staleness.fault : result.staleness.normal).push(Number.isFinite(staleness) ? staleness : -1);
  const bound = boundFor(op, faults, options);
  if (staleness > bound) {
    violate(
      served ? "served a deleted model" : "refused a model that exists",
      `${op.replica} answered ${op.status} for ${op.model} (request ${fmt(op.invoke)}–${fmt(op.complete)}); ${Number.isFinite(staleness) ? `the model last agreed ${Math.round(staleness)} ms before the request (bound ${Math.round(bound)} ms)` : "the model never agreed"}`,
      op.complete,
      tokens,
      op.replica,
    );
  }
}

/** The name model changes address (their events name this cache key). */
const MODELS = "models:all";

/** How long before `invoke` the model last agreed with the answer (0 when it agreed during the request). */
function stalenessOf(model: ModelView, op: AuthOp, probeModel: string): number {
  const status = op.status as Expected;
  if (model.expected(op.token, op.complete, probeModel) === status || model.expected(op.token, op.invoke, probeModel) === status) return 0;
  for (const p of model.changePoints(op.token, op.invoke, op.complete)) if (model.expected(op.token, p, probeModel) === status) return 0;
  const ownerPoints = model.ownerPoints(op.token);
  if (ownerPoints.length > 0) return pairStaleness(model, op, probeModel, ownerPoints);
  // Walk back through the moments the answer could have changed.
  const points = model.changePoints(op.token, Number.NEGATIVE_INFINITY, op.invoke).sort((a, b) => b - a);
  for (const p of points) {
    // Just before p the state was the one that p ended.
    if (model.expected(op.token, p - 1e-3, probeModel) === status) return op.invoke - p;
  }
  return Number.POSITIVE_INFINITY;
}

/**
 * A key in a team (or of a user): its record and its team's (user's) are cached apart, so the answer may combine
 * the key's state at one moment with the team's at another. Its staleness is that of the older of the two,
 * minimised over the moments either could have been read at (each change point, or just before it, up to the
 * request's end).
 */
function pairStaleness(model: ModelView, op: AuthOp, probeModel: string, teamPoints: number[]): number {
  const status = op.status as Expected;
  const candidates = (points: number[]) => [op.complete, op.invoke, ...points.filter((p) => p <= op.complete).flatMap((p) => [p, p - 1e-3])];
  const keyTimes = candidates(model.changePoints(op.token, Number.NEGATIVE_INFINITY, op.complete).filter((p) => !teamPoints.includes(p)));
  // Moments more than 10 s back are never within a bound: only the last team change before them matters.
  const horizon = op.invoke - 10_000;
  const recent = teamPoints.filter((p) => p >= horizon);
  const before = teamPoints.filter((p) => p < horizon).at(-1);
  // A switch to another history may change the team's state as well as the key's.
  const teamTimes = candidates([...(before === undefined ? recent : [before, ...recent]), ...model.boundaries.filter((b) => b >= horizon)]);
  let best = Number.POSITIVE_INFINITY;
  for (const tk of keyTimes) {
    const keyAge = Math.max(0, op.invoke - tk);
    if (keyAge >= best) continue;
    for (const tt of teamTimes) {
      const age = Math.max(keyAge, op.invoke - tt, 0);
      if (age < best && model.expectedAt(op.token, tk, tt, probeModel) === status) best = age;
    }
  }
  return best;
}

function boundFor(op: Op, faults: FaultWindow[], o: CheckerOptions): number {
  let bound = o.normalBoundMs;
  for (const f of faults) {
    if (op.invoke > f.end + (f.tailMs ?? o.faultTailMs) || op.complete < f.start) continue;
    // Slow or failing queries do not widen the bound: only lost notifications do (the heartbeat is then the floor).
    if (f.notificationsLost) bound = Math.max(bound, o.hardBoundMs);
    // Fail static: with Postgres and Redis both gone a replica serves what it holds, whatever changed since the
    // partition began; after it heals, the hard bound runs from the end.
    if (f.partition) bound = Math.max(bound, op.invoke - f.start + o.hardBoundMs);
  }
  return bound;
}

function duringFault(faults: FaultWindow[], op: Op, tailMs: number, which: (f: FaultWindow) => boolean): boolean {
  return faults.some((f) => which(f) && op.complete >= f.start && op.invoke <= f.end + (f.tailMs ?? tailMs));
}

/**
 * Does `predicate` hold at some moment of [from, to]? The model only changes at its change points, so the
 * moments to try are the ends of the interval and, for each change point inside, just before and just after.
 */
function someMoment(model: ModelView, tokens: string[], from: number, to: number, predicate: (t: number) => boolean): boolean {
  if (predicate(from) || predicate(to)) return true;
  for (const token of tokens) {
    for (const p of model.keyPoints(token)) {
      if (!Number.isFinite(p) || p < from || p > to) continue;
      if (predicate(p) || predicate(Math.max(from, p - 0.01)) || predicate(Math.min(to, p + 0.01))) return true;
    }
  }
  return false;
}

function parseGrace(grace: string | undefined): number {
  const m = /^(\d+)([smhd])$/.exec(grace ?? "0s");
  if (!m) return 0;
  return Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}

const short = (token: string) => `${token.slice(0, 8)}…`;
const fmt = (t: number) => new Date(t).toISOString().slice(11, 23);

/**
 * The requests on the key of `tokens` from 3 s before `at` to 0.5 s after, one line each: every change of the
 * key, and the authentications of its tokens on the replica that answered wrongly (all replicas when none is
 * named). At most 30 lines.
 */
function windowOf(ops: Op[], model: ModelView, tokens: string[], at: number, replica?: string): string[] {
  const keyTokens = new Set<string>(tokens);
  for (const t of tokens) for (const kt of model.keyOf(t)?.tokens ?? []) keyTokens.add(kt);
  // A key's team changes are part of its history.
  for (const t of tokens) {
    const key = model.keyOf(t);
    if (key?.team !== undefined) keyTokens.add(`team:${key.team}`);
    if (key?.user !== undefined) keyTokens.add(`user:${key.user}`);
  }
  const lines = ops
    .filter((o) => o.complete >= at - 3_000 && o.invoke <= at + 500)
    .filter((o) =>
      o.type === "auth"
        ? keyTokens.has(o.token) && (!replica || o.replica === replica)
        : o.addressed.some((t) => keyTokens.has(t)) || (o.newToken !== undefined && keyTokens.has(o.newToken)),
    )
    .sort((a, b) => a.invoke - b.invoke)
    .map((o) => {
      const span = `${fmt(o.invoke)}–${fmt(o.complete)}`;
      if (o.type === "auth") return `${span} ${o.replica} authenticate ${short(o.token)}${o.model ? ` for ${o.model}` : ""} → ${o.status}${o.code ? ` ${o.code}` : ""}`;
      const args = [
        o.addressed.map((t) => (/^(team|user|models):/.test(t) ? t : short(t))).join(","),
        o.modelId ? `model ${o.modelId.slice(0, 8)}` : "",
        o.grace ? `grace ${o.grace}` : "",
        o.models ? `models ${JSON.stringify(o.models)}` : "",
        o.raced ? "raced" : "",
      ]
        .filter(Boolean)
        .join(" ");
      const out = [o.newToken ? `new ${short(o.newToken)}` : "", o.eventIds.length ? `event ${o.eventIds.join(",")}` : ""].filter(Boolean).join(" ");
      return `${span} ${o.replica} ${o.kind} ${args} → ${o.status}${o.code ? ` ${o.code}` : ""} ${out}`.trimEnd();
    });
  return lines.length > 30 ? [...lines.slice(0, 10), `… ${lines.length - 30} more …`, ...lines.slice(-20)] : lines;
}
