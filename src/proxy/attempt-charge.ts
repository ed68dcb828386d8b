import type { ModelDeployment } from "../config/settings.js";
import type { Lease, LimitEnforcer } from "../limits/limit-enforcer.js";
import { priceOf } from "../limits/pricing.js";
import type { UsageMeter } from "../limits/usage-meter.js";
import type { RelayRecord } from "./relay-record.js";

/**
 * What one attempt is charged, settled once however it ended: its usage when upstream reported it, its reservation
 * (the worst case) when it was relayed without one, nothing when upstream failed before answering. `settle` also
 * records the usage and cost on the request (its spend log row).
 */
export class AttemptCharge {
  /** The answer began (upstream answered 2xx): without reported usage, the reservation is charged. */
  relayed = false;
  private settled: Promise<void> | undefined;

  constructor(
    private readonly x: RelayRecord,
    private readonly limits: LimitEnforcer,
    private readonly deployment: ModelDeployment,
    private readonly lease: Lease | undefined,
    private readonly meter: UsageMeter | undefined,
  ) {}

  readonly settle = (): Promise<void> => {
    if (this.settled) return this.settled;
    const { x, lease, deployment } = this;
    const usage = this.meter?.usage;
    x.usage = usage;
    if (!lease) {
      this.settled = SETTLED;
      return SETTLED;
    }
    const charge = usage ? priceOf(deployment, usage) : this.relayed ? undefined : priceOf(deployment, { promptTokens: 0, completionTokens: 0 });
    x.cost = (charge ?? lease.reserved).cost;
    this.settled = this.limits.settle(lease, charge);
    return this.settled;
  };
}

const SETTLED: Promise<void> = Promise.resolve();
