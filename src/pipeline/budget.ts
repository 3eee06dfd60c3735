/**
 * The in-flight byte budget (`intake.maxInFlightBytes`) over the bytes the lanes hold. Intake
 * pauses above it and resumes only at half of it, so a budget-sized stream of large messages
 * does not flap the consumers; a prefetch window already on the wire still arrives while intake
 * pauses, so deliveries are refused (handed back) only past twice the budget.
 */
export class ByteBudget {
  readonly #max: number;
  readonly #onPressure: ((over: boolean) => void) | undefined;
  #over = false;

  constructor(max: number, onPressure: ((over: boolean) => void) | undefined) {
    this.#max = max;
    this.#onPressure = onPressure;
  }

  /** Whether a delivery of `incoming` bytes may join the `held` ones. */
  admits(held: number, incoming: number): boolean {
    return held === 0 || held + incoming <= 2 * this.#max;
  }

  /** Reports crossing the budget (true) and falling back to half of it (false), once each. */
  check(held: number): void {
    if (!this.#over && held > this.#max) {
      this.#over = true;
      this.#onPressure?.(true);
    } else if (this.#over && held <= this.#max / 2) {
      this.#over = false;
      this.#onPressure?.(false);
    }
  }
}
