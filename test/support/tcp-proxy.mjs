// A TCP proxy put between a replica and Postgres or Redis, to inject network faults. Shared by the tests,
// the chaos suite and the benchmarks (types in tcp-proxy.d.mts).
//  - "pass": forwards bytes both ways;
//  - "blackhole": keeps every connection open but forwards nothing (a silent network partition);
//  - latencyMs: delays every chunk by that much;
//  - cutAll(): destroys every open connection at once (new ones still pass).
import net from "node:net";

export async function startTcpProxy(targetHost, targetPort) {
  const pairs = new Set();
  let mode = "pass";
  let latencyMs = 0;

  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    const pair = { client, upstream };
    pairs.add(pair);
    const forward = (from, to) =>
      from.on("data", (chunk) => {
        if (mode !== "pass") return;
        if (latencyMs > 0) setTimeout(() => to.writable && to.write(chunk), latencyMs);
        else to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;

  return {
    port,
    get mode() {
      return mode;
    },
    get connections() {
      return pairs.size;
    },
    setMode(next) {
      mode = next;
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    cutAll() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
    },
    close() {
      this.cutAll();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The same connection URL with host and port replaced by the proxy's. */
export function viaProxy(url, proxy) {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(proxy.port);
  return u.toString();
}
