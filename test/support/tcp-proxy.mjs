// A TCP proxy put between a replica and Postgres or Redis, to inject network faults. Shared by the tests,
// the chaos suite and the benchmarks (types in tcp-proxy.d.mts).
//  - "pass": forwards bytes both ways;
//  - "blackhole": keeps every connection open but forwards nothing (a silent network partition);
//  - "reject": closes every new connection at once (a server that is down);
//  - cutOnce(pattern, { forward }): the next time a client sends bytes containing `pattern`, the client's
//    connection dies, after (forward: true) or instead of (forward: false) passing those bytes on. Aimed at
//    "COMMIT", it leaves a transaction's outcome unknown to the client;
//  - setLatency(ms, direction): delays every chunk by that much, both ways or only "toClient" (answers come
//    back late: a query runs at once on the server and its result arrives slowly) or only "toServer";
//  - answered(pattern): resolves once the server has answered bytes a client sent containing `pattern` (its first
//    bytes back on that connection reached the proxy, however long a latency then holds them): a query has run;
//  - cutAll(): destroys every open connection at once (new ones still pass);
//  - retarget(host, port): new connections go to another server, open ones are cut (a virtual IP or a DNS name
//    moved to a promoted standby or replica).
import net from "node:net";

export async function startTcpProxy(initialHost, initialPort) {
  let targetHost = initialHost;
  let targetPort = initialPort;
  const pairs = new Set();
  let mode = "pass";
  let latencyMs = 0;
  let latencyDirection = "both";
  let trap = null;
  /** answered() calls still waiting for a client to send their pattern. */
  let watches = [];

  const server = net.createServer((client) => {
    if (mode === "reject") {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    // Watches whose pattern this client sent, resolved by the server's next bytes on this connection.
    const pair = { client, upstream, awaitingAnswer: [] };
    pairs.add(pair);
    client.on("data", (chunk) => {
      if (watches.length > 0) {
        const sent = watches.filter((w) => chunk.includes(w.pattern));
        if (sent.length > 0) {
          watches = watches.filter((w) => !sent.includes(w));
          pair.awaitingAnswer.push(...sent);
        }
      }
      if (trap && chunk.includes(trap.pattern)) {
        const { forward } = trap;
        trap.sprung();
        trap = null;
        if (forward) {
          upstream.write(chunk);
          // Let the server answer into the void, then hang up on it too.
          upstream.once("data", () => upstream.destroy());
        } else upstream.destroy();
        client.destroy();
        return;
      }
      if (mode !== "pass") return;
      if (latencyMs > 0 && latencyDirection !== "toClient") setTimeout(() => upstream.writable && upstream.write(chunk), latencyMs);
      else upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (mode !== "pass") return;
      if (pair.awaitingAnswer.length > 0) for (const w of pair.awaitingAnswer.splice(0)) w.answered();
      if (latencyMs > 0 && latencyDirection !== "toServer") setTimeout(() => client.writable && client.write(chunk), latencyMs);
      else client.write(chunk);
    });
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
    setLatency(ms, direction = "both") {
      latencyMs = ms;
      latencyDirection = direction;
    },
    answered(pattern) {
      return new Promise((resolve) => {
        watches.push({ pattern: Buffer.from(pattern), answered: resolve });
      });
    },
    cutOnce(pattern, { forward }) {
      return new Promise((resolve) => {
        trap = { pattern: Buffer.from(pattern), forward, sprung: resolve };
      });
    },
    retarget(host, port) {
      targetHost = host;
      targetPort = port;
      this.cutAll();
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
