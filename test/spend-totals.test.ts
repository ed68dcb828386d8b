import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigFile } from "../src/config/settings.js";
import { type Cluster, type Replica, startCluster } from "./helpers/cluster.js";
import { api, chatBody } from "./helpers/http.js";
import { costOf, pricedModel } from "./helpers/prices.js";
import { waitFor } from "./helpers/services.js";

/**
 * LiteLLM's spend routes that scripts call (docs/spend-logs.md, "Spend by key, team and user"), on two replicas:
 * `/global/spend/keys`, `/global/spend/teams`, `/spend/keys`, `/spend/users`, in LiteLLM's shapes; a rotated key is one
 * entry, whatever token it had.
 */
const config: ConfigFile = {
  model_list: [pricedModel("priced")],
  gatehouse_settings: { limits: { flush_interval_ms: 100 }, spend_logs: { flush_interval_ms: 100 } },
};

let cluster: Cluster;
let A: Replica, B: Replica;

beforeAll(async () => {
  cluster = await startCluster({ size: 2, config });
  [A, B] = cluster.replicas as [Replica, Replica];
}, 60_000);
afterAll(async () => {
  await cluster?.close();
});

const chat = (r: Replica, key: string) => api(r.url, "/v1/chat/completions", { key, body: chatBody("priced", { max_tokens: 1 }) });

describe("LiteLLM's spend routes", () => {
  it("keys, teams and users by spend, in LiteLLM's shapes; a rotated key stays one entry", async () => {
    const team = (await A.admin("/team/new", { team_alias: "spenders" })).body;
    const user = (await A.admin("/user/new", { user_id: `spender-${process.pid}`, auto_create_key: false })).body;
    const big = (await A.admin("/key/generate", { team_id: team.team_id, key_alias: `big-${process.pid}` })).body;
    const small = (await A.admin("/key/generate", { user_id: user.user_id })).body;
    await cluster.settle();
    let cost = 0;
    for (let i = 0; i < 3; i++) cost = costOf((await chat([A, B][i % 2]!, big.key)).body.usage);
    expect((await chat(B, small.key)).status).toBe(200);
    // Rotated: its next requests are charged under a new token, to the same key.
    const rotated = (await A.admin(`/key/${encodeURIComponent(big.key)}/regenerate`, {})).body;
    await cluster.settle();
    expect((await chat(A, rotated.key)).status).toBe(200);
    await waitFor(async () => (await B.admin(`/key/info?key=${rotated.key}`)).body.info.durable_spend === 4 * cost, { what: "the big key's spend to be flushed" });

    const top = (await B.admin("/global/spend/keys?limit=2")).body;
    expect(top[0]).toEqual({ api_key: rotated.token, key_id: big.key_id, key_alias: `big-${process.pid}`, key_name: rotated.key_name, total_spend: 4 * cost });
    expect(top.filter((k: { key_id: string }) => k.key_id === big.key_id)).toHaveLength(1);

    const keys = (await A.admin("/spend/keys?limit=5")).body;
    expect(keys[0]).toMatchObject({ key_id: big.key_id, spend: 4 * cost, team_id: team.team_id });

    const users = (await A.admin(`/spend/users?user_id=${user.user_id}`)).body;
    expect(users).toHaveLength(1);
    await waitFor(async () => (await A.admin(`/spend/users?user_id=${user.user_id}`)).body[0].spend === cost, { what: "the user's spend to be flushed" });

    // The team's totals are summed from spend logs, which each replica flushes on its own interval: the rows of
    // requests served by A and by B arrive apart, so wait for all four.
    await waitFor(
      async () => (await A.admin("/global/spend/teams")).body.total_spend_per_team.find((t: { team_id: string }) => t.team_id === team.team_id)?.total_spend === 4 * cost,
      { what: "the team's daily totals to hold all four requests" },
    );
    const teams = (await A.admin("/global/spend/teams")).body;
    expect(teams.teams).toContain(team.team_id);
    expect(teams.total_spend_per_team.find((t: { team_id: string }) => t.team_id === team.team_id)).toEqual({
      team_id: team.team_id,
      team_alias: "spenders",
      total_spend: 4 * cost,
    });
    const today = new Date().toISOString().slice(0, 10);
    expect(teams.daily_spend.find((d: { date: string }) => d.date === today)[team.team_id]).toBe(4 * cost);

    // A query they do not know is a 400 naming it.
    const bad = await A.admin("/global/spend/keys?limt=2");
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe("limt");
  });
});
