export type ProxyMode = "pass" | "blackhole" | "reject";

export interface TcpProxy {
  readonly port: number;
  readonly mode: ProxyMode;
  /** Open client connections right now. */
  readonly connections: number;
  setMode(mode: ProxyMode): void;
  /** Delays chunks both ways, or only answers ("toClient") or only requests ("toServer"). */
  setLatency(ms: number, direction?: "both" | "toClient" | "toServer"): void;
  /**
   * Resolves once the server answered bytes a client sent containing `pattern` (the answer reached the proxy; a
   * latency may still hold it back from the client): the query they carried has run.
   */
  answered(pattern: string): Promise<void>;
  /** Resolves when the trap was sprung. */
  cutOnce(pattern: string, options: { forward: boolean }): Promise<void>;
  cutAll(): void;
  /** New connections go to host:port from now on; open ones are cut. */
  retarget(host: string, port: number): void;
  close(): Promise<void>;
}

export function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy>;
export function viaProxy(url: string, proxy: TcpProxy): string;
