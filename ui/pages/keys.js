// Keys: search and page through every key (newest first), generate one (shown once), and for one key — at its own
// address, #/keys/<key_id> — rotate with a grace (the timeline shows both tokens' windows and whether each works
// now), end a grace, block, unblock, delete, edit limits, and its spend logs.
import { useEffect, useRef, useState } from "preact/hooks";
import { get, post } from "../api.js";
import {
  changedValues,
  Field,
  fieldValue,
  formValues,
  html,
  KeyStatus,
  LoadError,
  Loading,
  money,
  num,
  OneTimeKey,
  Outcome,
  Pager,
  Table,
  Timeline,
  useAction,
  useLoad,
  when,
} from "../components.js";

const PAGE_SIZE = 25;
const LIMIT_NUMBERS = ["max_budget", "rpm_limit", "tpm_limit", "max_parallel_requests"];
const keyHref = (keyId) => `#/keys/${encodeURIComponent(keyId)}`;

export function KeysPage({ param }) {
  const [search, setSearch] = useState("");
  const [page, setPage] = useState(1);
  const [created, setCreated] = useState(null);
  const list = useLoad(() => get("/key/list", { page, size: PAGE_SIZE, search, return_full_object: "true" }), [page, search]);
  // A new key is listed first (newest first): back to the first page to show it.
  const generate = useAction(() => (page === 1 ? list.reload() : setPage(1)));

  const onGenerate = async (e) => {
    e.preventDefault();
    const form = e.target;
    const body = formValues(form, { numbers: LIMIT_NUMBERS, lists: ["models"] });
    const key = await generate.run(() => post("/key/generate", body), "Key generated.");
    if (key) {
      form.reset();
      setCreated(key);
    }
  };

  return html`<section aria-labelledby="keys-title">
    <h1 id="keys-title">Keys</h1>
    ${
      created
        ? html`<${OneTimeKey} title=${`New key ${created.key_alias ?? created.key_name}`} plaintext=${created.key} onClose=${() => setCreated(null)}>
            <p><a href=${keyHref(created.key_id)}>Open the new key's page</a></p>
          </${OneTimeKey}>`
        : html`<details class="panel">
            <summary>Generate a key</summary>
            <form class="grid" onSubmit=${onGenerate} aria-label="Generate a key">
              <${Field} label="Alias" name="key_alias" />
              <${Field} label="Team id" name="team_id" />
              <${Field} label="User id" name="user_id" />
              <${Field} label="Models" name="models" hint="Comma-separated; empty allows every model." />
              <${Field} label="Max budget (USD)" name="max_budget" type="number" step="any" min="0" />
              <${Field} label="Requests per minute" name="rpm_limit" type="number" min="0" />
              <${Field} label="Tokens per minute" name="tpm_limit" type="number" min="0" />
              <${Field} label="Expires after" name="duration" hint="e.g. 30d, 12h; empty never expires." />
              <div class="actions"><button type="submit" disabled=${generate.busy}>Generate key</button></div>
            </form>
            <${Outcome} action=${generate} />
          </details>`
    }
    <form class="search" role="search" onSubmit=${(e) => {
      e.preventDefault();
      setPage(1);
      setSearch(new FormData(e.target).get("search").trim());
    }}>
      <label for="key-search">Search keys</label>
      <input id="key-search" name="search" type="search" placeholder="Alias prefix, key id, user id or team id" />
      <button type="submit">Search</button>
    </form>
    <${LoadError} error=${list.error} />
    <${Loading} load=${list} what="keys" />
    ${
      list.data &&
      html`<p class="muted" role="status">${num(list.data.total_count)} ${list.data.total_count === 1 ? "key" : "keys"}${search ? ` matching “${search}”` : ""}.</p>
        <${Table}
          caption="Keys, newest first"
          busy=${list.loading && !list.fresh}
          rowKey=${(k) => k.key_id}
          rows=${list.data.keys}
          columns=${[
            { title: "Alias", cell: (k) => html`<a href=${keyHref(k.key_id)} aria-current=${k.key_id === param ? "page" : undefined}>${k.key_alias ?? "(no alias)"}</a>` },
            { title: "Key", cell: (k) => html`<code>${k.key_name}</code>` },
            { title: "Team", cell: (k) => k.team_id ?? "—" },
            { title: "User", cell: (k) => k.user_id ?? "—" },
            { title: "Spend / budget", cell: (k) => `${money(k.spend)} / ${money(k.max_budget)}` },
            { title: "Status", cell: (k) => html`<${KeyStatus} k=${k} />` },
            { title: "Created", cell: (k) => when(k.created_at) },
          ]}
        />
        <${Pager} page=${page} totalPages=${list.data.total_pages} onPage=${setPage} label="Pages of keys" />`
    }
    ${param && html`<${KeyDetail} key=${param} keyId=${param} onChanged=${list.reload} onClose=${() => (location.hash = "#/keys")} />`}
  </section>`;
}

/** A key by its id: found by the list's search (a key id matches exactly), then read in full by its token. */
async function loadKey(keyId) {
  const { keys } = await get("/key/list", { search: keyId, size: 100, return_full_object: "true" });
  const found = keys.find((k) => k.key_id === keyId);
  if (!found) throw new Error(`There is no key with id ${keyId} (it may have been deleted).`);
  return get("/key/info", { key: found.token });
}

function KeyDetail({ keyId, onChanged, onClose }) {
  const info = useLoad(() => loadKey(keyId), [keyId]);
  const action = useAction(() => {
    info.reload();
    onChanged();
  });
  const change = action.run;
  const [rotated, setRotated] = useState(null);
  const heading = useRef(null);
  const k = info.data?.info;
  // The current token's hash: every change addresses the key by it (a rotation keeps the key id, and the page).
  const token = k?.token;

  // Opened from the list or by its address: the reader is taken to it.
  useEffect(() => {
    heading.current?.focus();
    heading.current?.scrollIntoView({ block: "nearest" });
  }, [keyId]);

  const regenerate = async (e) => {
    e.preventDefault();
    const grace = new FormData(e.target).get("grace_period").trim();
    const result = await change(() => post("/key/regenerate", { key: token, ...(grace ? { grace_period: grace } : {}) }), "Key regenerated.");
    if (result) setRotated(result);
  };
  const remove = () => {
    if (!window.confirm(`Delete key ${k.key_alias ?? k.key_name}? Every token of it stops working on every replica.`)) return;
    change(() => post("/key/delete", { keys: [token] }), "Key deleted.").then((r) => r && onClose());
  };
  const editLimits = (e) => {
    e.preventDefault();
    const values = changedValues(e.target, k, { numbers: LIMIT_NUMBERS, lists: ["models"] });
    // Nothing sent when nothing changed: an update is an event every replica applies.
    if (Object.keys(values).length === 0) change(async () => null, "Nothing changed.");
    else change(() => post("/key/update", { key: token, ...values }), "Limits saved.");
  };

  const windows = k
    ? [
        ...(k.grace_tokens ?? []).map((g) => ({ label: g.key_name, kind: "old", from: g.created_at, to: g.revoke_at, usable: g.usable, refusal: g.refusal })),
        // The current token took over at the latest rotation still in grace (or exists since the key was made).
        { label: k.key_name, kind: "current", from: (k.grace_tokens ?? []).at(-1)?.created_at ?? k.created_at, to: k.expires, usable: k.usable, refusal: k.refusal },
      ]
    : [];

  return html`<section class="panel detail" aria-labelledby="key-detail-title">
    <div class="detail-head">
      <h2 id="key-detail-title" tabindex="-1" ref=${heading}>Key ${k ? (k.key_alias ?? k.key_name) : ""}</h2>
      <button type="button" class="secondary" onClick=${onClose}>Close</button>
    </div>
    <${LoadError} error=${info.error} />
    <${Loading} load=${info} what="the key" />
    ${rotated && html`<${OneTimeKey} title="The new token" plaintext=${rotated.key} onClose=${() => setRotated(null)} />`}
    <${Outcome} action=${action} />
    ${
      k &&
      html`<dl class="facts">
          <dt>Key id</dt><dd><code>${k.key_id}</code></dd>
          <dt>Current token</dt><dd><code>${k.key_name}</code></dd>
          <dt>Status</dt><dd><${KeyStatus} k=${k} />${k.refusal ? html` <span class="muted" data-testid="refusal">${k.refusal.message}</span>` : null}</dd>
          <dt>Team / user</dt><dd>${k.team_id ?? "—"} / ${k.user_id ?? "—"}</dd>
          <dt>Spend</dt><dd>${money(k.spend)} of ${money(k.max_budget)}${k.budget_duration ? `, resets every ${k.budget_duration}` : ""}</dd>
          <dt>Limits</dt><dd>rpm ${num(k.rpm_limit)}, tpm ${num(k.tpm_limit)}, parallel ${num(k.max_parallel_requests)}</dd>
          <dt>Models</dt><dd>${k.models.length ? k.models.join(", ") : "all"}</dd>
          <dt>Expires</dt><dd>${k.expires ? when(k.expires) : "never"}</dd>
        </dl>
        <${Timeline} windows=${windows} />
        <div class="actions">
          ${
            k.blocked
              ? html`<button type="button" onClick=${() => change(() => post("/key/unblock", { key: token }), "Key unblocked on every replica.")}>Unblock</button>`
              : html`<button type="button" onClick=${() => change(() => post("/key/block", { key: token }), "Key blocked on every replica.")}>Block</button>`
          }
          ${
            (k.grace_tokens ?? []).length > 0
              ? html`<button type="button" onClick=${() => change(() => post("/key/end_grace", { key: token }), "Grace ended: only the current token works now.")}>End grace now</button>`
              : null
          }
          <button type="button" class="danger" onClick=${remove}>Delete</button>
        </div>
        <form class="inline-form" onSubmit=${regenerate} aria-label="Regenerate this key">
          <${Field} label="Grace period for the old token" name="grace_period" defaultValue="1h" hint="e.g. 30m, 1h, 2d; 0: the old token stops now; empty: the gateway's default grace." />
          <button type="submit" disabled=${action.busy}>Regenerate</button>
        </form>
        <details class="panel">
          <summary>Edit limits</summary>
          <form key=${k.version} class="grid" onSubmit=${editLimits} aria-label="Edit limits">
            <${Field} scope="edit" label="Max budget (USD)" name="max_budget" type="number" step="any" min="0" defaultValue=${fieldValue(k.max_budget)} />
            <${Field} scope="edit" label="Requests per minute" name="rpm_limit" type="number" min="0" defaultValue=${fieldValue(k.rpm_limit)} />
            <${Field} scope="edit" label="Tokens per minute" name="tpm_limit" type="number" min="0" defaultValue=${fieldValue(k.tpm_limit)} />
            <${Field} scope="edit" label="Parallel requests" name="max_parallel_requests" type="number" min="0" defaultValue=${fieldValue(k.max_parallel_requests)} />
            <${Field} scope="edit" label="Models" name="models" hint="Comma-separated; empty allows every model." defaultValue=${fieldValue(k.models)} />
            <${Field} scope="edit" label="Budget period" name="budget_duration" hint="e.g. 30d; empty: the budget never resets." defaultValue=${fieldValue(k.budget_duration)} />
            <div class="actions"><button type="submit" disabled=${action.busy}>Save limits</button></div>
          </form>
        </details>
        <${KeyLogs} keyId=${k.key_id} />`
    }
  </section>`;
}

function KeyLogs({ keyId }) {
  const logs = useLoad(() => get("/spend/logs", { key_id: keyId, page_size: 20 }), [keyId]);
  return html`<div>
    <h3>Recent requests <button type="button" class="secondary small" onClick=${logs.reload}>Refresh</button></h3>
    <${LoadError} error=${logs.error} />
    <${Loading} load=${logs} what="the key's requests" />
    ${
      logs.data &&
      html`<${Table}
        caption="The key's last 20 requests (spend logs)"
        busy=${logs.loading && !logs.fresh}
        rowKey=${(r) => r.request_id}
        rows=${logs.data}
        empty="No requests logged for this key yet."
        columns=${[
          { title: "Time", cell: (r) => when(r.startTime) },
          { title: "Model", cell: (r) => r.model },
          { title: "Tokens", cell: (r) => num(r.total_tokens) },
          { title: "Spend", cell: (r) => money(r.spend) },
          { title: "Status", cell: (r) => r.status },
          { title: "Replica", cell: (r) => r.replica_id ?? "—" },
        ]}
      />`
    }
  </div>`;
}
