import net from "node:net";

/**
 * A TCP proxy put between a replica and Postgres or Redis, to inject network faults:
 *  - "pass": forwards bytes both ways;
 *  - "blackhole": keeps every connection open but forwards nothing (a silent network partition);
 *  - cutAll(): destroys every open connection at once (new ones still pass).
 */
export type ProxyMode = "pass" | "blackhole";

export interface TcpProxy {
  port: number;
  mode: ProxyMode;
  /** Open client connections right now. */
  readonly connections: number;
  setMode(mode: ProxyMode): void;
  cutAll(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let mode: ProxyMode = "pass";

  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    const pair = { client, upstream };
    pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on("data", (chunk) => {
        if (mode === "pass") to.write(chunk);
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
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;

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
    cutAll() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
    },
    close() {
      this.cutAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The same connection URL with host and port replaced by the proxy's. */
export function viaProxy(url: string, proxy: TcpProxy): string {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(proxy.port);
  return u.toString();
}
