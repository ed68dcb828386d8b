// Spend over time per key, team, user or model, from the daily totals (never a scan of raw rows).
import { useState } from "preact/hooks";
import { get } from "../api.js";
import { BarChart, html, LoadError, Loading, money, num, Select, Table, useLoad } from "../components.js";

const FIELD = { team: "teams", key: "keys", user: "users", model: "models" };
const day = (d) => d.toISOString().slice(0, 10);

/** Every day of the range, so a day without spend shows as an empty bar rather than disappearing. */
function daysOf(start, end) {
  const out = [];
  for (let t = Date.parse(start); t <= Date.parse(end); t += 86_400_000) out.push(day(new Date(t)));
  return out;
}

/**
 * What a group is: per key, the key (its key_id: a key rotated spent through several tokens, one row of the report
 * each, and is one row here), or, for a token whose key is not known, the token's hash; otherwise its name.
 */
function identity(group, g) {
  if (group !== "key") return g.name ?? "";
  return g.key_id ?? (g.name === null ? "" : `token:${g.name}`);
}

function label(group, id, { keyNames, deleted }) {
  if (id === "") return group === "team" ? "(no team)" : group === "user" ? "(no user)" : group === "key" ? "(master key)" : "(none)";
  if (group !== "key") return id;
  // A key by its alias or name while it exists; else a short piece of its id or of the token's hash (never a key).
  if (id.startsWith("token:")) return `key …${id.slice(-8)}`;
  return keyNames.get(id) ?? `key ${id.slice(0, 8)}…${deleted.has(id) ? " (deleted)" : ""}`;
}

const KEYS_NAMED = 20;

/** The report, and for a report per key the alias or name of its largest spenders' keys (found by key id). */
async function loadReport(query) {
  const report = await get("/global/spend/report", query);
  const keyNames = new Map();
  const deleted = new Set();
  // The data says which grouping it is: the selector may already show the next one while this is on screen.
  const group = query.group_by;
  if (group !== "key") return { group, report, keyNames, deleted };
  const spend = new Map();
  for (const d of report) for (const g of d.keys) if (g.key_id) spend.set(g.key_id, (spend.get(g.key_id) ?? 0) + g.total_spend);
  const largest = [...spend].sort((a, b) => b[1] - a[1]).slice(0, KEYS_NAMED);
  await Promise.all(
    largest.map(async ([keyId]) => {
      const { keys } = await get("/key/list", { search: keyId, size: 100, return_full_object: "true" });
      const key = keys.find((k) => k.key_id === keyId);
      // Aliases are unique; names (sk-...abcd) may repeat across keys, so those carry a piece of the id.
      if (key) keyNames.set(keyId, key.key_alias ?? `${key.key_name} (${keyId.slice(0, 8)}…)`);
      else deleted.add(keyId);
    }),
  );
  return { group, report, keyNames, deleted };
}

export function SpendPage() {
  const [group, setGroup] = useState("model");
  const [range, setRange] = useState("30");
  const end = day(new Date());
  const start = day(new Date(Date.now() - (Number(range) - 1) * 86_400_000));
  const report = useLoad(() => loadReport({ start_date: start, end_date: end, group_by: group }), [group, range]);

  let chart = null;
  const shown = report.data?.group ?? group;
  if (report.data) {
    const totals = new Map();
    const perDay = new Map();
    for (const d of report.data.report)
      for (const g of d[FIELD[shown]]) {
        const id = identity(shown, g);
        const t = totals.get(id) ?? { id, name: label(shown, id, report.data), spend: 0, requests: 0, tokens: 0 };
        t.spend += g.total_spend;
        t.requests += g.total_requests;
        t.tokens += g.total_tokens;
        totals.set(id, t);
        perDay.set(`${d.group_by_day}\0${id}`, (perDay.get(`${d.group_by_day}\0${id}`) ?? 0) + g.total_spend);
      }
    const ranked = [...totals.values()].sort((a, b) => b.spend - a.spend || b.requests - a.requests);
    // Five series and "other": a chart of fifty colours says nothing.
    const top = ranked.slice(0, 5).map((t) => t.id);
    const series = [...ranked.slice(0, 5).map((t) => ({ name: t.name, values: {} })), { name: "other", values: {} }];
    for (const [k, v] of perDay) {
      const [d, id] = k.split("\0");
      const s = series[top.includes(id) ? top.indexOf(id) : 5];
      s.values[d] = (s.values[d] ?? 0) + v;
    }
    chart = { ranked, series: series.filter((s) => Object.keys(s.values).length > 0) };
  }

  const total = chart ? chart.ranked.reduce((s, t) => s + t.spend, 0) : 0;
  const requests = chart ? chart.ranked.reduce((s, t) => s + t.requests, 0) : 0;
  return html`<section aria-labelledby="spend-title">
    <h1 id="spend-title">Spend</h1>
    <form class="inline-form" onSubmit=${(e) => e.preventDefault()} aria-label="What to chart">
      <${Select} label="Per" name="group_by" value=${group} onChange=${(e) => setGroup(e.target.value)} options=${[
        ["model", "model"],
        ["team", "team"],
        ["user", "user"],
        ["key", "key"],
      ]} />
      <${Select} label="Over" name="range" value=${range} onChange=${(e) => setRange(e.target.value)} options=${[
        ["7", "the last 7 days"],
        ["30", "the last 30 days"],
        ["90", "the last 90 days"],
      ]} />
      <button type="button" class="secondary" onClick=${report.reload}>Refresh</button>
    </form>
    <${LoadError} error=${report.error} />
    <${Loading} load=${report} what="spend" />
    ${
      chart &&
      html`<p class="summary" data-testid="spend-total">${money(total)} over ${num(requests)} requests, ${start} to ${end}.</p>
        <${BarChart} days=${daysOf(start, end)} series=${chart.series} label=${`Spend per day per ${shown}, ${start} to ${end}: ${money(total)} in all`} />
        <${Table}
          caption=${`Spend per ${shown}`}
          busy=${report.loading && !report.fresh}
          rowKey=${(t) => t.id}
          rows=${chart.ranked}
          empty="No spend in this range."
          columns=${[
            {
              title: shown[0].toUpperCase() + shown.slice(1),
              // A key that still exists links to its page (its requests, its limits).
              cell: (t) => (shown === "key" && report.data.keyNames.has(t.id) ? html`<a href=${`#/keys/${encodeURIComponent(t.id)}`}>${t.name}</a>` : t.name),
            },
            { title: "Spend", cell: (t) => money(t.spend) },
            { title: "Requests", cell: (t) => num(t.requests) },
            { title: "Tokens", cell: (t) => num(t.tokens) },
          ]}
        />`
    }
    <p class="muted">The raw requests of one key are on its page under Keys. Per key, a key rotated is one row: its tokens' spend summed.</p>
  </section>`;
}
