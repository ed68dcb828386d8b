/**
 * The checker's model of what is true at each moment: every key's tokens and states, its team's and its user's,
 * and the database model's deployments, each change dated by its commit (and by the latest it may have
 * committed: its answer). Built from the committed changes in commit order (sequential-history.ts); the rules ask
 * it what a right answer was at a moment (rules/).
 */
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
