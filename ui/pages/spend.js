// Spend over time per key, team, user or model, from the daily totals (never a scan of raw rows).
import { useState } from "preact/hooks";
import { get } from "../api.js";
import { BarChart, html, LoadError, money, num, Select, Table, useLoad } from "../components.js";

const FIELD = { team: "teams", key: "keys", user: "users", model: "models" };
const day = (d) => d.toISOString().slice(0, 10);

/** Every day of the range, so a day without spend shows as an empty bar rather than disappearing. */
function daysOf(start, end) {
  const out = [];
  for (let t = Date.parse(start); t <= Date.parse(end); t += 86_400_000) out.push(day(new Date(t)));
  return out;
}

function label(group, name, keyNames) {
  if (name === null) return group === "team" ? "(no team)" : group === "user" ? "(no user)" : "(master key)";
  if (group !== "key") return name;
  // Keys are grouped by the token's hash: the key's alias or name when it is still known, else a short piece of
  // the hash (never a key).
  return keyNames.get(name) ?? `key …${name.slice(-8)}`;
}

const KEYS_NAMED = 20;

/** The report, and for a report per key the alias or name of its largest spenders' keys (a hash finds its key). */
async function loadReport(query) {
  const report = await get("/global/spend/report", query);
  const keyNames = new Map();
  // The data says which grouping it is: the selector may already show the next one while this is on screen.
  const group = query.group_by;
  if (group !== "key") return { group, report, keyNames };
  const spend = new Map();
  for (const d of report) for (const g of d.keys) if (g.name !== null) spend.set(g.name, (spend.get(g.name) ?? 0) + g.total_spend);
  const largest = [...spend].sort((a, b) => b[1] - a[1]).slice(0, KEYS_NAMED);
  await Promise.all(
    largest.map(async ([hash]) => {
      try {
        const { info } = await get("/key/info", { key: hash });
        // Aliases are unique; names (sk-...abcd) may repeat across keys, so those carry a piece of the hash.
        const name = info.key_alias ?? `${info.key_name} (…${hash.slice(-6)})`;
        keyNames.set(hash, info.deprecated ? `${name} (old token ${info.deprecated.key_name})` : name);
      } catch {
        // A deleted key: its hash is all that is left.
      }
    }),
  );
  return { group, report, keyNames };
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
        const name = label(shown, g.name, report.data.keyNames);
        const t = totals.get(name) ?? { name, spend: 0, requests: 0, tokens: 0 };
        t.spend += g.total_spend;
        t.requests += g.total_requests;
        t.tokens += g.total_tokens;
        totals.set(name, t);
        perDay.set(`${d.group_by_day}\0${name}`, (perDay.get(`${d.group_by_day}\0${name}`) ?? 0) + g.total_spend);
      }
    const ranked = [...totals.values()].sort((a, b) => b.spend - a.spend || b.requests - a.requests);
    // Five series and "other": a chart of fifty colours says nothing.
    const top = ranked.slice(0, 5).map((t) => t.name);
    const series = [...top.map((name) => ({ name, values: {} })), { name: "other", values: {} }];
    for (const [k, v] of perDay) {
      const [d, name] = k.split("\0");
      const s = series[top.includes(name) ? top.indexOf(name) : 5];
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
    ${
      chart &&
      html`<p class="summary" data-testid="spend-total">${money(total)} over ${num(requests)} requests, ${start} to ${end}.</p>
        <${BarChart} days=${daysOf(start, end)} series=${chart.series} label=${`Spend per day per ${shown}, ${start} to ${end}: ${money(total)} in all`} />
        <${Table}
          caption=${`Spend per ${shown}`}
          rowKey=${(t) => t.name}
          rows=${chart.ranked}
          empty="No spend in this range."
          columns=${[
            { title: shown[0].toUpperCase() + shown.slice(1), cell: (t) => t.name },
            { title: "Spend", cell: (t) => money(t.spend) },
            { title: "Requests", cell: (t) => num(t.requests) },
            { title: "Tokens", cell: (t) => num(t.tokens) },
          ]}
        />`
    }
    <p class="muted">The raw requests of one key are on its page under Keys.</p>
  </section>`;
}
