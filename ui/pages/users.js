// Users: list, create, and for one user: budget, live spend, keys; delete.
import { useState } from "preact/hooks";
import { get, post } from "../api.js";
import { Field, formValues, html, LoadError, Loading, money, num, Outcome, Pager, Table, useAction, useLoad } from "../components.js";

export function UsersPage() {
  const [page, setPage] = useState(1);
  const [selected, setSelected] = useState(null);
  const list = useLoad(() => get("/user/list", { page, page_size: 25 }), [page]);
  const create = useAction(list.reload);
  const onCreate = async (e) => {
    e.preventDefault();
    const form = e.target;
    const body = { ...formValues(form, { numbers: ["max_budget"], lists: ["models"] }), auto_create_key: false };
    const user = await create.run(
      () => post("/user/new", body),
      (u) => `User ${u.user_id} created.`,
    );
    if (user) {
      form.reset();
    }
  };
  return html`<section aria-labelledby="users-title">
    <h1 id="users-title">Users</h1>
    <details class="panel">
      <summary>Create a user</summary>
      <form class="grid" onSubmit=${onCreate} aria-label="Create a user">
        <${Field} label="User id" name="user_id" hint="Empty: one is made up." />
        <${Field} label="Email" name="user_email" type="email" />
        <${Field} label="Max budget (USD)" name="max_budget" type="number" step="any" min="0" />
        <${Field} label="Models" name="models" hint="Comma-separated; empty allows every model." />
        <div class="actions"><button type="submit" disabled=${create.busy}>Create user</button></div>
      </form>
    </details>
    <${Outcome} action=${create} />
    <${LoadError} error=${list.error} />
    <${Loading} load=${list} what="users" />
    ${
      list.data &&
      html`<${Table}
          caption="Users"
          busy=${list.loading && !list.fresh}
          rowKey=${(u) => u.user_id}
          rows=${list.data.users}
          columns=${[
            { title: "User", cell: (u) => html`<button type="button" class="link" onClick=${() => setSelected(u.user_id)}>${u.user_id}</button>` },
            { title: "Email", cell: (u) => u.user_email ?? "—" },
            { title: "Spend / budget", cell: (u) => `${money(u.spend)} / ${money(u.max_budget)}` },
            { title: "Models", cell: (u) => (u.models.length ? u.models.join(", ") : "all") },
          ]}
        />
        <${Pager} page=${page} totalPages=${list.data.total_pages} onPage=${setPage} label="Pages of users" />`
    }
    ${selected && html`<${UserDetail} userId=${selected} onChanged=${list.reload} onClose=${() => setSelected(null)} />`}
  </section>`;
}

function UserDetail({ userId, onChanged, onClose }) {
  const info = useLoad(() => get("/user/info", { user_id: userId }), [userId]);
  const action = useAction(() => {
    info.reload();
    onChanged();
  });
  const u = info.data?.user_info;
  const remove = () => {
    if (!window.confirm(`Delete user ${userId} and every key of it?`)) return;
    action.run(() => post("/user/delete", { user_ids: [userId] }), "User deleted.").then((r) => r && onClose());
  };
  const setBudget = (e) => {
    e.preventDefault();
    const values = formValues(e.target, { numbers: ["max_budget"] });
    action.run(() => post("/user/update", { user_id: userId, ...values }), "Budget saved.");
  };
  return html`<section class="panel detail" aria-labelledby="user-detail-title">
    <div class="detail-head">
      <h2 id="user-detail-title">User ${userId}</h2>
      <button type="button" class="secondary" onClick=${onClose}>Close</button>
    </div>
    <${LoadError} error=${info.error} />
    <${Loading} load=${info} what="the user" />
    <${Outcome} action=${action} />
    ${
      u &&
      html`<dl class="facts">
          <dt>Live spend</dt><dd>${money(u.spend)} of ${money(u.max_budget)}</dd>
          <dt>Email</dt><dd>${u.user_email ?? "—"}</dd>
          <dt>Keys</dt><dd>${num(info.data.key_count)}</dd>
        </dl>
        <form class="inline-form" onSubmit=${setBudget} aria-label="Set the user's budget">
          <${Field} scope="detail" label="Max budget (USD)" name="max_budget" type="number" step="any" min="0" required />
          <button type="submit">Save budget</button>
        </form>
        <div class="actions"><button type="button" class="danger" onClick=${remove}>Delete user</button></div>`
    }
  </section>`;
}
