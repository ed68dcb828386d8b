import { createRequire } from "node:module";
import type { Options as PgListenOptions, Subscriber } from "pg-listen";
import type { Logger } from "../logger.js";
import { locatedConnection } from "../store/primary-locator.js";

export type ListenerState = "connecting" | "listening" | "reconnecting" | "closed";

export interface EventListenerOptions {
  connectionString: string;
  channel: string;
  applicationName: string;
  checkIntervalMs: number;
  logger: Logger;
  onNotification: (payload: unknown) => void;
  /** Called after every (re)connection, once LISTEN is in place: the moment to catch up. */
  onConnected: () => void;
  onStateChange?: (state: ListenerState) => void;
}

// pg-listen is CommonJS with `exports.default`; require() gives the one shape every loader agrees on.
const createSubscriber = (createRequire(import.meta.url)("pg-listen") as { default: (config: object, options: PgListenOptions) => Subscriber }).default;

/**
 * The LISTEN connection: its own direct connection (never through a transaction pooler), managed by
 * pg-listen, which checks it every `checkIntervalMs` and reconnects with capped backoff, forever.
 * A NOTIFY is only a latency hint (pg-boss's notifier): the periodic catch-up in Coherence is the floor.
 */
export class EventListener {
  private subscriber: Subscriber | null = null;
  private currentState: ListenerState = "connecting";

  constructor(private readonly options: EventListenerOptions) {}

  get state(): ListenerState {
    return this.currentState;
  }

  async start(): Promise<void> {
    const o = this.options;
    const subscriber = createSubscriber(
      {
        // With several hosts in the URL, each (re)connection goes to the one a fresh probe finds writable.
        ...locatedConnection(o.connectionString),
        application_name: o.applicationName,
        // Bounds pg-listen's liveness check, so a blackholed connection is noticed instead of hanging.
        // Shorter than the check interval, so one check has failed before the next one starts.
        query_timeout: Math.max(200, Math.floor(o.checkIntervalMs * 0.8)),
        connectionTimeoutMillis: 2_000,
      } as never,
      {
        paranoidChecking: o.checkIntervalMs,
        retryInterval: (attempt: number) => Math.min(100 * 2 ** attempt, 2_000),
        retryLimit: Infinity,
        // 0 = never give up reconnecting (pg-listen only checks a truthy timeout).
        retryTimeout: 0,
      },
    );
    this.subscriber = subscriber;
    subscriber.notifications.on(o.channel, (payload: unknown) => o.onNotification(payload));
    subscriber.events.on("reconnect", (attempt: number) => {
      if (attempt === 1) o.logger.warn({ channel: o.channel }, "LISTEN connection lost; reconnecting");
      this.setState("reconnecting");
    });
    subscriber.events.on("connected", () => {
      o.logger.info({ channel: o.channel }, "LISTEN connection re-established");
      this.setState("listening");
      o.onConnected();
    });
    subscriber.events.on("error", (err: Error) => {
      o.logger.error({ err: err.message }, "LISTEN connection error");
    });
    await subscriber.connect();
    await subscriber.listenTo(o.channel);
    this.setState("listening");
    o.onConnected();
  }

  async close(): Promise<void> {
    this.setState("closed");
    await this.subscriber?.close().catch(() => {});
  }

  private setState(state: ListenerState): void {
    if (this.currentState === state || this.currentState === "closed") return;
    this.currentState = state;
    this.options.onStateChange?.(state);
  }
}
