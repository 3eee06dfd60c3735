import type { BrokerFault } from './amqp/faults.ts';

/**
 * What keeps each broker connection or source down, by scope, for the readiness reason. A
 * configuration fault the broker reports before the bridge was first ready ends start-up
 * (`startupFault`, exit 78): it names a key to fix. After the first ready it is retried like any
 * other fault and named in the readiness reason.
 */
export class BrokerFaults {
  readonly #byScope = new Map<string, BrokerFault>();
  #everReady = false;
  #reportStartupFault: (line: string) => void = () => undefined;
  /** Settles with one line naming the key when the broker refuses the config before the first ready. */
  readonly startupFault = new Promise<string>((resolve) => {
    this.#reportStartupFault = resolve;
  });

  /** What keeps `scope` down now; undefined when it is fine again. */
  set(scope: string, fault: BrokerFault | undefined): void {
    if (fault === undefined) this.#byScope.delete(scope);
    else this.#byScope.set(scope, fault);
    if (fault?.config === true && !this.#everReady)
      this.#reportStartupFault(`${fault.key}: ${fault.message}`);
  }

  /** The bridge has been ready: from now on a configuration fault no longer ends start-up. */
  markReady(): void {
    this.#everReady = true;
  }

  get all(): BrokerFault[] {
    return [...this.#byScope.values()];
  }
}
