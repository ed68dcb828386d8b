/**
 * The recorded history of a run: every request a client made, with its invoke and complete times on the
 * checker's one clock and its answer. Times are `performance.timeOrigin + performance.now()`: monotonic within
 * the run and on the same scale as the database's `clock_timestamp()` on this host, so an event's commit time
 * can be placed among the requests.
 */
import { performance } from "node:perf_hooks";

export const checkerNow = (): number => performance.timeOrigin + performance.now();

export type AdminKind =
  | "generate"
  | "regenerate"
  | "end_grace"
  | "update"
  | "block"
  | "unblock"
  | "delete"
  | "reset_spend"
  | "team_block"
  | "team_unblock"
  | "team_new"
  | "team_models"
  | "team_delete"
  | "user_new"
  | "user_delete"
  | "user_models"
  | "model_new"
  | "model_update"
  | "model_delete";

/** The kind of event a change of this kind commits (models and user updates have their own names). */
export function eventKindOf(kind: AdminKind): string {
  if (kind === "model_new" || kind === "model_update" || kind === "model_delete") return "model_change";
  if (kind === "user_models") return "user_update";
  if (kind === "team_models") return "team_update";
  return kind;
}

export interface AdminOp {
  type: "admin";
  id: number;
  kind: AdminKind;
  replica: string;
  invoke: number;
  complete: number;
  /** HTTP status; 0 when the connection failed (the replica died or was cut off): outcome unknown. */
  status: number;
  code?: string;
  /** Token hashes the request named (delete may name several; generate none). */
  addressed: string[];
  grace?: string;
  models?: string[];
  /** generate: the team the key joins; team_new / team_block / team_unblock / team_models / team_delete: the team. */
  team?: string;
  /** generate: the user the key belongs to; user_new / user_delete / user_models: the user. */
  user?: string;
  /** model_new (from its answer), model_update, model_delete: the database model's id. */
  modelId?: string;
  /** Event ids from the Gatehouse-Event-Id header of a 2xx answer. */
  eventIds: number[];
  /** From a 2xx answer: the new key's token and key_id (generate, regenerate), revoke_at (regenerate). */
  newToken?: string;
  keyId?: string;
  revokeAt?: number;
  /** end_grace: the tokens it revoked. */
  revoked?: string[];
  /** Part of a pair fired at the same key from two replicas at once. */
  raced?: boolean;
  /** A request with invalid input on purpose (it must be a 400 and change nothing). */
  invalid?: boolean;
  /** generate: the key's max_budget (a budget key, sent priced requests until it is spent). */
  maxBudget?: number;
  /** generate: the key's model_max_budget on the priced model, its only budget (a budget key on that model). */
  modelBudget?: number;
  /** generate: a budget key's soft_budget (soft-budgets.ts). */
  softBudget?: number;
}

export interface AuthOp {
  type: "auth";
  id: number;
  replica: string;
  invoke: number;
  complete: number;
  status: number;
  code?: string;
  token: string;
  /**
   * The model asked for, when it is not the run's probe model: a database model added and deleted during the run,
   * or the priced model a budget key is charged for.
   */
  model?: string;
  /** A 200 for the priced model: what it was charged (from its usage and the model's prices). */
  cost?: number;
}

export type Op = AdminOp | AuthOp;

/**
 * A committed change: the surviving database's event table after the run, and the changes the checker heard
 * commit on a primary that a failover then lost.
 */
export interface CommittedEvent {
  id: number;
  /**
   * The Postgres primary that committed it: 0 the first, one more at each promotion (a promoted standby issues
   * event ids again). Absent: 0.
   */
  gen?: number;
  kind: string;
  tokens: string[];
  /**
   * Commit time on the checker's clock: when its NOTIFY reached the checker's own LISTEN connection, less a small
   * slack (checker.ts commitTime), never before its row was written; the row's created_at when it was not heard.
   */
  at: number;
  /** The event row's created_at (taken before COMMIT, which may come seconds later). Absent: `at`. */
  writtenAt?: number;
  /** When its NOTIFY arrived (it had surely committed by then), when it was heard. */
  committedBy?: number;
  /** Committed on a primary a failover lost: not in the surviving database. */
  lost?: boolean;
}

/** A fault as it was injected: [start, end] on the checker's clock. */
export interface FaultWindow {
  name: string;
  start: number;
  end: number;
  /** Postgres could not be reached (a 503 from a replica is then the documented answer). */
  postgresImpaired: boolean;
  /** Postgres and Redis both unreachable: replicas serve what they hold (fail static), however old. */
  partition: boolean;
  /** Notifications may be lost: the hard bound applies instead of the normal one. */
  notificationsLost: boolean;
  /** Redis unreachable, lost or rewound for some replica: routing state is each replica's own meanwhile (routing.ts). */
  redisImpaired?: boolean;
  /** How long after its end it still counts as a fault period, when not the checker's default (a failover's recovery is longer). */
  tailMs?: number;
  /** A Postgres failover that may lose commits: changes committed in [lossFrom, lossTo] may be gone with the old primary. */
  lossFrom?: number;
  lossTo?: number;
  /**
   * Spans whose spend a live ledger re-seeded from Postgres may miss (Redis lost or rewound its ledgers, a replica
   * died before flushing, a failover): each is widened by the flush interval before it (checker.ts checkBudgets).
   */
  spendMayBeForgotten?: Array<{ from: number; to: number }>;
}

export class History {
  readonly ops: Op[] = [];
  readonly faults: FaultWindow[] = [];
  /** When each replica (by name) was last (re)started: its caches start empty then. */
  readonly replicaStarts: Array<{ replica: string; at: number }> = [];
  private nextId = 1;

  record<T extends Op>(op: Omit<T, "id">): T {
    const full = { ...op, id: this.nextId++ } as T;
    this.ops.push(full);
    return full;
  }
}
