import type { Logger } from "./logger.js";

type Teardown = () => Promise<void> | void;

/**
 * Owns teardown of everything a process created. Each resource registers its teardown at the
 * moment it is acquired; {@link Lifecycle.close} releases in reverse order, keeps going past
 * failures, bounds every step in time, and is idempotent (a second call returns the same promise).
 */
export class Lifecycle {
  readonly #steps: { name: string; teardown: Teardown }[] = [];
  readonly #logger: Logger;
  #closing: Promise<void> | undefined;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /** Registers `teardown` to run at close, before anything registered earlier. */
  defer(name: string, teardown: Teardown): void {
    if (this.#closing) {
      throw new Error(`cannot register ${name}: the process is stopping`);
    }
    this.#steps.push({ name, teardown });
  }

  /**
   * Runs every teardown in LIFO order.
   * @param stepTimeoutMs how long one step may take before it is abandoned. Default 5 000 ms.
   */
  close(stepTimeoutMs = 5_000): Promise<void> {
    this.#closing ??= this.#run(stepTimeoutMs);
    return this.#closing;
  }

  async #run(stepTimeoutMs: number): Promise<void> {
    const errors: Error[] = [];
    for (const step of this.#steps.reverse()) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(step.teardown),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`${step.name} did not stop within ${stepTimeoutMs} ms`)),
              stepTimeoutMs,
            );
            timer.unref();
          }),
        ]);
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        this.#logger.warn({ err: error, step: step.name }, "teardown step failed");
        errors.push(error);
      } finally {
        clearTimeout(timer);
      }
    }
    if (errors.length === 1) {
      throw errors[0];
    }
    if (errors.length > 1) {
      throw new AggregateError(errors, "several teardown steps failed");
    }
  }
}
