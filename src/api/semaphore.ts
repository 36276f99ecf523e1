/**
 * Bounds how many streamed responses hold a PostgreSQL connection at once. Waiters are served in
 * arrival order; one that waits longer than its timeout gets `false` and is answered 503.
 */
export class Semaphore {
  #free: number;
  readonly #waiters: { grant: () => void }[] = [];

  constructor(slots: number) {
    this.#free = slots;
  }

  /** Resolves true once a slot is held (release it with {@link release}), false on timeout. */
  acquire(timeoutMs: number): Promise<boolean> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const waiter = {
        grant: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        resolve(false);
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) {
      next.grant();
    } else {
      this.#free++;
    }
  }
}
