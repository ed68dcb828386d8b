// Teams: list, create, and for one team: its members (add, remove), budget and live spend, block, unblock, delete.
import { useState } from "preact/hooks";
import { get, post } from "../api.js";
import { changedValues, Field, fieldValue, formValues, html, LoadError, Loading, money, num, Outcome, overBudget, Select, Table, useAction, useLoad, when } from "../components.js";

const LIMIT_NUMBERS = ["max_budget", "rpm_limit", "tpm_limit", "max_parallel_requests"];

/** Blocked, over its budget (its keys are refused: 400 budget_exceeded, live spend ≥ budget), or active. */
function teamStatus(t) {
  if (t.blocked) return html`<span class="badge bad" data-testid="team-status">blocked</span>`;
  if (overBudget(t.spend, t.max_budget)) return html`<span class="badge bad" data-testid="team-status">over budget</span>`;
  return html`<span class="badge good" data-testid="team-status">active</span>`;
}

export function TeamsPage() {
  const [selected, setSelected] = useState(null);
  const list = useLoad(() => get("/team/list", { size: 100 }), []);
  const create = useAction(list.reload);
  const onCreate = async (e) => {
    e.preventDefault();
    const form = e.target;
    const team = await create.run(
      () => post("/team/new", formValues(form, { numbers: LIMIT_NUMBERS, lists: ["models"] })),
      (t) => `Team ${t.team_alias ?? t.team_id} created.`,
    );
    if (team) {
      form.reset();
      setSelected(team.team_id);
    }
  };
  return html`<section aria-labelledby="teams-title">
    <h1 id="teams-title">Teams</h1>
    <details class="panel">
      <summary>Create a team</summary>
      <form class="grid" onSubmit=${onCreate} aria-label="Create a team">
        <${Field} label="Team alias" name="team_alias" required />
        <${Field} label="Team id" name="team_id" hint="Empty: one is made up." />
        <${Field} label="Max budget (USD)" name="max_budget" type="number" step="any" min="0" />
        <${Field} label="Budget period" name="budget_duration" hint="e.g. 30d" />
        <${Field} label="Models" name="models" hint="Comma-separated; empty allows every model." />
        <${Field} label="Requests per minute" name="rpm_limit" type="number" min="0" />
        <div class="actions"><button type="submit" disabled=${create.busy}>Create team</button></div>
      </form>
    </details>
    <${Outcome} action=${create} />
    <${LoadError} error=${list.error} />
    <${Loading} load=${list} what="teams" />
    ${
      list.data &&
      html`<${Table}
        caption="Teams (first 100)"
        busy=${list.loading && !list.fresh}
        rowKey=${(t) => t.team_id}
        rows=${list.data}
        columns=${[
          { title: "Team", cell: (t) => html`<button type="button" class="link" onClick=${() => setSelected(t.team_id)}>${t.team_alias ?? t.team_id}</button>` },
          { title: "Id", cell: (t) => html`<code>${t.team_id}</code>` },
          { title: "Members", cell: (t) => num(t.members_with_roles.length) },
          { title: "Spend / budget", cell: (t) => `${money(t.spend)} / ${money(t.max_budget)}` },
          { title: "Status", cell: teamStatus },
        ]}
      />`
    }
    ${selected && html`<${TeamDetail} teamId=${selected} onChanged=${list.reload} onClose=${() => setSelected(null)} />`}
  </section>`;
}

function TeamDetail({ teamId, onChanged, onClose }) {
  const info = useLoad(() => get("/team/info", { team_id: teamId }), [teamId]);
  const action = useAction(() => {
    info.reload();
    onChanged();
  });
  const change = action.run;
  const t = info.data?.team_info;
  const addMember = (e) => {
    e.preventDefault();
    const form = e.target;
    const { user_id, role, max_budget_in_team } = formValues(form, { numbers: ["max_budget_in_team"] });
    change(
      () => post("/team/member_add", { team_id: teamId, member: { user_id, role }, ...(max_budget_in_team !== undefined ? { max_budget_in_team } : {}) }),
      `${user_id} added.`,
    ).then((r) => r && form.reset());
  };
  const setLimits = (e) => {
    e.preventDefault();
    const values = changedValues(e.target, t, { numbers: LIMIT_NUMBERS, lists: ["models"] });
    // Nothing sent when nothing changed: an update is an event every replica applies.
    if (Object.keys(values).length === 0) change(async () => null, "Nothing changed.");
    else change(() => post("/team/update", { team_id: teamId, ...values }), "Team limits saved on every replica.");
  };
  const remove = () => {
    if (!window.confirm(`Delete team ${t.team_alias ?? teamId} and every key of it?`)) return;
    change(() => post("/team/delete", { team_ids: [teamId] }), "Team deleted.").then((r) => r && onClose());
  };
  return html`<section class="panel detail" aria-labelledby="team-detail-title">
    <div class="detail-head">
      <h2 id="team-detail-title">Team ${t ? (t.team_alias ?? teamId) : teamId}</h2>
      <button type="button" class="secondary" onClick=${onClose}>Close</button>
    </div>
    <${LoadError} error=${info.error} />
    <${Loading} load=${info} what="the team" />
    <${Outcome} action=${action} />
    ${
      t &&
      html`<dl class="facts">
          <dt>Team id</dt><dd><code>${t.team_id}</code></dd>
          <dt>Status</dt><dd>${teamStatus(t)}</dd>
          <dt>Live spend</dt><dd>${money(t.spend)} of ${money(t.max_budget)}${t.budget_duration ? `, resets every ${t.budget_duration} (next ${when(t.budget_reset_at)})` : ""}</dd>
          <dt>Limits</dt><dd data-testid="team-limits">budget ${money(t.max_budget)}, rpm ${num(t.rpm_limit)}, tpm ${num(t.tpm_limit)}, parallel ${num(t.max_parallel_requests)}</dd>
          <dt>Models</dt><dd>${t.models.length ? t.models.join(", ") : "all"}</dd>
          <dt>Keys</dt><dd>${num(info.data.key_count)}</dd>
        </dl>
        <div class="actions">
          ${
            t.blocked
              ? html`<button type="button" onClick=${() => change(() => post("/team/unblock", { team_id: teamId }), "Team unblocked.")}>Unblock team</button>`
              : html`<button type="button" onClick=${() => change(() => post("/team/block", { team_id: teamId }), "Team blocked: its keys are refused on every replica.")}>Block team</button>`
          }
          <button type="button" class="danger" onClick=${remove}>Delete team</button>
        </div>
        <form key=${t.version} class="inline-form" onSubmit=${setLimits} aria-label="Set the team's limits">
          <${Field} scope="team" label="Max budget (USD)" name="max_budget" type="number" step="any" min="0" defaultValue=${fieldValue(t.max_budget)} />
          <${Field} scope="team" label="Budget period" name="budget_duration" hint="e.g. 30d" defaultValue=${fieldValue(t.budget_duration)} />
          <${Field} scope="team" label="Requests per minute" name="rpm_limit" type="number" min="0" defaultValue=${fieldValue(t.rpm_limit)} />
          <${Field} scope="team" label="Tokens per minute" name="tpm_limit" type="number" min="0" defaultValue=${fieldValue(t.tpm_limit)} />
          <${Field} scope="team" label="Parallel requests" name="max_parallel_requests" type="number" min="0" defaultValue=${fieldValue(t.max_parallel_requests)} />
          <${Field} scope="team" label="Models" name="models" hint="Comma-separated; empty allows every model." defaultValue=${fieldValue(t.models)} />
          <button type="submit" disabled=${action.busy}>Save team limits</button>
        </form>
        <${Table}
          caption="Members"
          rowKey=${(m) => m.user_id}
          rows=${info.data.team_memberships.map((m) => ({ ...m, role: t.members_with_roles.find((r) => r.user_id === m.user_id)?.role }))}
          empty="No members yet."
          columns=${[
            { title: "User", cell: (m) => m.user_id },
            { title: "Role", cell: (m) => m.role ?? "—" },
            { title: "Spend in team / budget", cell: (m) => `${money(m.spend)} / ${money(m.max_budget_in_team)}` },
            {
              title: "Remove",
              cell: (m) =>
                html`<button type="button" class="secondary small" aria-label=${`Remove ${m.user_id}`} onClick=${() => change(() => post("/team/member_delete", { team_id: teamId, user_id: m.user_id }), `${m.user_id} removed.`)}>Remove</button>`,
            },
          ]}
        />
        <form class="inline-form" onSubmit=${addMember} aria-label="Add a member">
          <${Field} label="User id" name="user_id" required />
          <${Select} label="Role" name="role" options=${[["user", "user"], ["admin", "admin"]]} />
          <${Field} label="Budget in team (USD)" name="max_budget_in_team" type="number" step="any" min="0" />
          <button type="submit" disabled=${action.busy}>Add member</button>
        </form>`
    }
  </section>`;
}
