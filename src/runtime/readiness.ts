/** What /readyz reports about the shared services and each component. */
export interface ReadyState {
  readonly ready: boolean;
  readonly postgres: boolean;
  readonly rabbitmq: boolean;
  /** Component name → serving. */
  readonly components: Readonly<Record<string, boolean>>;
}

export interface ReadinessOptions {
  /** One database round trip; true when PostgreSQL answered. */
  readonly pingDatabase: () => Promise<boolean>;
  /** Whether the AMQP connection is open (in memory, no I/O). */
  readonly amqpConnected: () => boolean;
  readonly components: readonly {
    readonly name: string;
    isReady?(): boolean;
    readonly acceptsWithoutBroker?: boolean;
  }[];
  /** How long a database answer is reused, ms. Default 1 000. */
  readonly maxAgeMs?: number;
  /** Clock in ms (tests pass their own). Default `performance.now`. */
  readonly now?: () => number;
}

/**
 * Readiness for /readyz. The database answer is the only part that costs a round trip, so it is
 * reused for about a second and concurrent requests share one ping in flight: a public port
 * polled in a loop cannot turn into a query per request. RabbitMQ and the components are read
 * fresh each time (they are in memory).
 */
export class Readiness {
  readonly #o: ReadinessOptions;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  #postgres: { readonly at: number; readonly answer: Promise<boolean> } | undefined;

  constructor(options: ReadinessOptions) {
    this.#o = options;
    this.#maxAgeMs = options.maxAgeMs ?? 1_000;
    this.#now = options.now ?? (() => performance.now());
  }

  async check(): Promise<ReadyState> {
    const postgres = await this.#postgresAnswer();
    const rabbitmq = this.#o.amqpConnected();
    const components = Object.fromEntries(
      this.#o.components.map((c) => [c.name, c.isReady ? c.isReady() : true]),
    );
    // Components that work on through a RabbitMQ outage (the webhook's outbox) stay ready.
    const brokerOptional =
      this.#o.components.length > 0 && this.#o.components.every((c) => c.acceptsWithoutBroker);
    const ready =
      postgres && (rabbitmq || brokerOptional) && Object.values(components).every(Boolean);
    return { ready, postgres, rabbitmq, components };
  }

  #postgresAnswer(): Promise<boolean> {
    const now = this.#now();
    const cached = this.#postgres;
    // The age counts from when the ping started, so a slow answer is not kept longer.
    if (cached && now - cached.at < this.#maxAgeMs) {
      return cached.answer;
    }
    const answer = this.#o.pingDatabase().catch(() => false);
    this.#postgres = { at: now, answer };
    return answer;
  }
}
