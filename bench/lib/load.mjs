// An open-loop load generator: requests are scheduled at a fixed rate whatever the server does, and each
// latency is measured from the moment the request was due (so queueing is counted, not hidden: no
// coordinated omission). Microsecond timing, unlike autocannon's millisecond histogram. Requests due
// within the same millisecond tick leave together, which adds up to ~1 ms to every target alike.
import { Pool } from "undici";
import { percentile } from "./harness.mjs";

export async function openLoop({ url, path, headers, body, rate, durationMs, connections = 64, warmupMs = 1_000 }) {
  const pool = new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const latenciesUs = [];
  let errors = 0;
  let non2xx = 0;
  const inflight = new Set();
  const fire = (due, record) => {
    const p = pool
      .request({ path, method: "POST", headers, body })
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode >= 300) non2xx++;
        if (record) latenciesUs.push(Number(process.hrtime.bigint() - due) / 1000);
      })
      .catch(() => {
        errors++;
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const run = async (ms, record) => {
    const start = process.hrtime.bigint();
    const intervalNs = 1e9 / rate;
    let sent = 0;
    const total = Math.floor((rate * ms) / 1000);
    while (sent < total) {
      const now = process.hrtime.bigint();
      // Send everything that is due by now, each stamped with its own due time.
      while (sent < total && start + BigInt(Math.floor(sent * intervalNs)) <= now) {
        fire(start + BigInt(Math.floor(sent * intervalNs)), record);
        sent++;
      }
      // Sleep, do not spin: on 2 shared cores a spinning generator starves the server it measures.
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  await run(warmupMs, false);
  await run(durationMs, true);
  await Promise.all(inflight);
  await pool.close();
  latenciesUs.sort((a, b) => a - b);
  return {
    rate,
    requests: latenciesUs.length,
    errors,
    non2xx,
    p50Us: percentile(latenciesUs, 50),
    p99Us: percentile(latenciesUs, 99),
    maxUs: latenciesUs.at(-1),
  };
}
