import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Replica } from "../../../test/helpers/cluster.js";
import type { AdminOp } from "./history.js";
import { pick } from "./pick.js";
import type { AdminChoice } from "./profiles.js";
import type { KnownKey, Workload } from "./workload.js";

/**
 * The admin operations of the profile's mix: one entry of ADMIN_ACTIONS per choice, each making its request(s)
 * (recorded) and updating what the clients know from the answer. A new operation is a weight in the mix
 * (profiles.ts) and an entry here.
 */

const GRACES = ["0s", "2s", "1h"] as const;
// Teams every run creates first and never deletes; more are created and deleted as the run goes. A team changes
// its keys' answers by being blocked and unblocked, by its model list (a key's own list must stay within it: an
// update asking for more is refused), and by its delete (which deletes its keys).
export const TEAMS = ["team-red", "team-blue"] as const;
const MODEL_CHOICES: string[][] = [[], ["mock-gpt"], ["mock-embedding"], ["mock-gpt", "mock-other"]];
// A user's models narrow its keys' (the probe model is mock-gpt): some lists allow it, some refuse it.
const USER_MODEL_CHOICES: string[][] = [[], ["mock-gpt"], ["mock-other"], ["mock-gpt", "mock-other"]];
// The database model the run adds, updates and deletes through /model/*; a probe key asks for it now and then.
export const DB_MODEL = "db-model";
const MODELS_NAME = "models:all";

/** What an operation acts on: the key the client picked (when there is one), the replica, and how. */
interface Target {
  key: KnownKey | undefined;
  replica: Replica;
  /** Part of a pair fired at the same key from two replicas at once. */
  raced: boolean;
  /** team_block / team_unblock: the team a team_toggle chose. */
  team?: string | undefined;
}

type AdminAction = (w: Workload, on: Target) => Promise<void>;

/** Operations that need no key of the client's: without one, any other choice generates a key. */
const KEYLESS: ReadonlySet<AdminChoice> = new Set<AdminChoice>(["model_new", "model_update", "model_delete", "user_models"]);

/** One admin operation of the mix. */
export function act(w: Workload, choice: AdminChoice, key: KnownKey | undefined, replica: Replica, raced = false, team?: string): Promise<void> {
  if (!key && !KEYLESS.has(choice)) return generate(w, replica);
  return ADMIN_ACTIONS[choice](w, { key, replica, raced, team });
}

/** Any token of the key: its newest one mostly, an older one (perhaps in its grace) sometimes. */
const addressOf = (key: KnownKey) => (Math.random() < 0.65 ? key.tokens.at(-1)! : pick(key.tokens.slice(-4)));

/** An operation on the client's key, named by one of its tokens (`act` made sure there is a key). */
const onKey =
  (action: (w: Workload, key: KnownKey, on: Target) => Promise<void>): AdminAction =>
  (w, on) =>
    action(w, on.key!, on);

/** A change of the key named by one of its tokens: `path` and body from that token. */
const keyRequest = (kind: "block" | "unblock" | "update" | "end_grace" | "reset_spend", request: (key: string) => { path: string; body: unknown; extra?: Partial<AdminOp> }) =>
  onKey(async (w, key, { replica, raced }) => {
    const target = addressOf(key);
    const { path, body, extra } = request(target.key);
    const op = await w.adminRequest(kind, replica, path, body, [target.token], { ...extra, raced });
    if (op.status === 200 && (kind === "block" || kind === "unblock")) key.blocked = kind === "block";
  });

export async function newUser(w: Workload, replica: Replica): Promise<string | undefined> {
  const user = `user-${++w.usersMade}`;
  const op = await w.adminRequest("user_new", replica, "/user/new", { user_id: user, auto_create_key: false }, [`user:${user}`], { user });
  if (op.status !== 200) return undefined;
  w.liveUsers.push(user);
  return user;
}

export async function generate(w: Workload, replica: Replica): Promise<void> {
  // A quarter belong to a user (now and then a new one); of the others, two in three join one of the run's teams:
  // a team's block refuses all of them (one event on the team). A key has a team or a user, never both, so its
  // answer combines two records, each read at its own moment (the checker's model).
  const user = Math.random() < 0.25 ? (w.liveUsers.length > 0 && Math.random() < 0.7 ? pick(w.liveUsers) : await newUser(w, replica)) : undefined;
  const team = user === undefined && Math.random() < 0.67 ? pick(w.liveTeams) : undefined;
  const body = { ...(team ? { team_id: team } : {}), ...(user ? { user_id: user } : {}) };
  const op = await w.adminRequest("generate", replica, "/key/generate", body, [], { models: [], ...(team ? { team } : {}), ...(user ? { user } : {}) });
  if (op.status === 200 && op.plaintext && op.keyId)
    w.known.push({ keyId: op.keyId, user, team, tokens: [{ key: op.plaintext, token: op.newToken! }], deleted: false, blocked: false });
}

/** A rotation, retried with its Idempotency-Key until its outcome is known (every attempt is recorded). */
async function regenerate(w: Workload, key: KnownKey, replica: Replica, raced: boolean): Promise<void> {
  const target = addressOf(key);
  const grace = pick(GRACES);
  const idem = randomUUID();
  const giveUpAt = Date.now() + 30_000;
  for (let attempt = 0; ; attempt++) {
    const others = w.adminReplicas();
    if (attempt > 0 && others.length === 0) return; // every replica is down (restarting): the outcome stays unknown
    const via = attempt === 0 ? replica : pick(others);
    const op = await w.adminRequest("regenerate", via, `/key/${target.key}/regenerate`, { grace_period: grace }, [target.token], { grace, raced }, { "idempotency-key": idem });
    if (op.status === 200) {
      if (op.plaintext && op.newToken && !key.tokens.some((t) => t.token === op.newToken)) key.tokens.push({ key: op.plaintext, token: op.newToken });
      return;
    }
    const retriable = op.status === 0 || op.status >= 500 || op.code === "rotation_in_progress";
    if (!retriable || Date.now() > giveUpAt || w.ctx.control.stopping) return;
    await sleep(100 + Math.random() * 200);
  }
}

/** The database model: a deployment added (at most two), one updated, one deleted. */
async function modelAction(w: Workload, choice: "model_new" | "model_update" | "model_delete", replica: Replica): Promise<void> {
  if (choice === "model_new" || w.modelIds.length === 0) {
    if (w.modelIds.length >= 2) return modelAction(w, "model_delete", replica);
    const op = await w.adminRequest("model_new", replica, "/model/new", { model_name: DB_MODEL, litellm_params: { model: `mock/${DB_MODEL}` } }, [MODELS_NAME]);
    if (op.status === 200 && op.modelId) w.modelIds.push(op.modelId);
    return;
  }
  const id = pick(w.modelIds);
  if (choice === "model_update") {
    await w.adminRequest("model_update", replica, "/model/update", { model_id: id, model_info: { touched: Date.now() } }, [MODELS_NAME], { modelId: id });
    return;
  }
  const op = await w.adminRequest("model_delete", replica, "/model/delete", { id }, [MODELS_NAME], { modelId: id });
  if (op.status === 200 || op.status === 404) w.modelIds.splice(w.modelIds.indexOf(id), 1);
}

/** block or unblock a team (the run's fixed ones, or the one a team_toggle chose). */
const teamBlock =
  (kind: "team_block" | "team_unblock"): AdminAction =>
  async (w, { replica, raced, team: chosen }) => {
    const team = chosen ?? pick(TEAMS);
    const op = await w.adminRequest(kind, replica, `/team/${kind === "team_block" ? "block" : "unblock"}`, { team_id: team }, [`team:${team}`], { team, raced });
    if (op.status === 200 && kind === "team_block") w.teamsBlocked.add(team);
    if (op.status === 200 && kind === "team_unblock") w.teamsBlocked.delete(team);
  };

const ADMIN_ACTIONS: Record<AdminChoice, AdminAction> = {
  generate: (w, { replica }) => generate(w, replica),
  regenerate: onKey((w, key, { replica, raced }) => regenerate(w, key, replica, raced)),
  block: keyRequest("block", (key) => ({ path: "/key/block", body: { key } })),
  unblock: keyRequest("unblock", (key) => ({ path: "/key/unblock", body: { key } })),
  update: keyRequest("update", (key) => {
    const models = pick(MODEL_CHOICES);
    return { path: "/key/update", body: { key, models }, extra: { models } };
  }),
  end_grace: keyRequest("end_grace", (key) => ({ path: `/key/${key}/end_grace`, body: {} })),
  reset_spend: keyRequest("reset_spend", (key) => ({ path: `/key/${key}/reset_spend`, body: { reset_to: 0 } })),
  delete: onKey(async (w, key, { replica, raced }) => {
    const target = addressOf(key);
    const other = Math.random() < 0.3 ? pick(w.known.filter((k) => !k.deleted && k !== key)) : undefined;
    const targets = other ? [target, addressOf(other)] : [target];
    const op = await w.adminRequest(
      "delete",
      replica,
      "/key/delete",
      { keys: targets.map((t) => t.key) },
      targets.map((t) => t.token),
      { raced },
    );
    if (op.status === 200) {
      key.deleted = true;
      if (other) other.deleted = true;
    }
  }),
  // Block the key if the client last saw it unblocked, else unblock it: every change flips its answer.
  toggle: onKey((w, key, { replica, raced }) => act(w, key.blocked ? "unblock" : "block", key, replica, raced)),
  invalid: onKey(async (w, key, { replica }) => {
    const target = addressOf(key);
    await w.adminRequest("regenerate", replica, `/key/${target.key}/regenerate`, { grace_period: pick(["1 hour", "-5s", "soon", "9999999999d"]) }, [target.token], {
      invalid: true,
    });
  }),
  // Two clients change the same key at once from two replicas, 0–5 ms apart.
  race: onKey(async (w, key) => {
    const candidates = w.adminReplicas();
    if (candidates.length === 0) return;
    const [r1, r2] = [pick(candidates), pick(candidates)];
    const kinds: AdminChoice[] = ["regenerate", "delete", "block", "update", "end_grace", "unblock"];
    const first = Math.random() < 0.6 ? "regenerate" : pick(kinds);
    const second = Math.random() < 0.5 ? "delete" : pick(kinds);
    await Promise.all([act(w, first, key, r1, true), sleep(Math.random() * 5).then(() => act(w, second, key, r2, true))]);
  }),
  team_new: async (w, { replica }) => {
    const team = `team-${++w.teamsMade}`;
    const op = await w.adminRequest("team_new", replica, "/team/new", { team_id: team }, [`team:${team}`], { team });
    if (op.status === 200) w.liveTeams.push(team);
  },
  team_delete: async (w, { key, replica, raced }) => {
    const made = w.liveTeams.filter((t) => !(TEAMS as readonly string[]).includes(t));
    if (made.length === 0) return act(w, "team_new", key, replica);
    const team = pick(made);
    const op = await w.adminRequest("team_delete", replica, "/team/delete", { team_ids: [team] }, [`team:${team}`], { team, raced });
    if (op.status === 200) {
      w.liveTeams.splice(w.liveTeams.indexOf(team), 1);
      for (const k of w.known) if (k.team === team) k.deleted = true;
    }
  },
  team_models: async (w, { replica, raced }) => {
    const team = pick(w.liveTeams);
    const models = pick(USER_MODEL_CHOICES);
    await w.adminRequest("team_models", replica, "/team/update", { team_id: team, models }, [`team:${team}`], { team, models, raced });
  },
  team_block: teamBlock("team_block"),
  team_unblock: teamBlock("team_unblock"),
  // The same for a team: block it if the client last saw it unblocked, else unblock it.
  team_toggle: (w, { key, replica, raced }) => {
    const team = pick(TEAMS);
    return act(w, w.teamsBlocked.has(team) ? "team_unblock" : "team_block", key, replica, raced, team);
  },
  user_new: async (w, { replica }) => void (await newUser(w, replica)),
  user_delete: async (w, { replica, raced }) => {
    const user = w.liveUsers.length > 0 ? pick(w.liveUsers) : undefined;
    if (!user) return;
    const op = await w.adminRequest("user_delete", replica, "/user/delete", { user_ids: [user] }, [`user:${user}`], { user, raced });
    if (op.status === 200) {
      w.liveUsers.splice(w.liveUsers.indexOf(user), 1);
      for (const k of w.known) if (k.user === user) k.deleted = true;
    }
  },
  user_models: async (w, { replica, raced }) => {
    const user = w.liveUsers.length > 0 ? pick(w.liveUsers) : undefined;
    if (!user) return;
    const models = pick(USER_MODEL_CHOICES);
    await w.adminRequest("user_models", replica, "/user/update", { user_id: user, models }, [`user:${user}`], { user, models, raced });
  },
  model_new: (w, { replica }) => modelAction(w, "model_new", replica),
  model_update: (w, { replica }) => modelAction(w, "model_update", replica),
  model_delete: (w, { replica }) => modelAction(w, "model_delete", replica),
};
