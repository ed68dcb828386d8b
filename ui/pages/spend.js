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

function label(group, name) {
  if (name === null) return group === "team" ? "(no team)" : group === "user" ? "(no user)" : "(master key)";
  // Keys are grouped by the token's hash: a short, recognisable piece of it (never a key).
  return group === "key" ? `key …${name.slice(-8)}` : name;
}

export function SpendPage() {
  const [group, setGroup] = useState("model");
  const [range, setRange] = useState("30");
  const end = day(new Date());
  const start = day(new Date(Date.now() - (Number(range) - 1) * 86_400_000));
  const report = useLoad(() => get("/global/spend/report", { start_date: start, end_date: end, group_by: group }), [group, range]);

  let chart = null;
  if (report.data) {
    const totals = new Map();
    const perDay = new Map();
    for (const d of report.data)
      for (const g of d[FIELD[group]]) {
        const name = label(group, g.name);
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
        <${BarChart} days=${daysOf(start, end)} series=${chart.series} label=${`Spend per day per ${group}, ${start} to ${end}: ${money(total)} in all`} />
        <${Table}
          caption=${`Spend per ${group}`}
          rowKey=${(t) => t.name}
          rows=${chart.ranked}
          empty="No spend in this range."
          columns=${[
            { title: group[0].toUpperCase() + group.slice(1), cell: (t) => t.name },
            { title: "Spend", cell: (t) => money(t.spend) },
            { title: "Requests", cell: (t) => num(t.requests) },
            { title: "Tokens", cell: (t) => num(t.tokens) },
          ]}
        />`
    }
    <p class="muted">The raw requests of one key are on its page under Keys.</p>
  </section>`;
}
