import type { AmqpConnection } from "../bus/connection.js";
import type { Config } from "../core/config.js";
import type { Logger } from "../core/logger.js";
import type { Metrics } from "../core/metrics.js";
import type { DatabaseHandle } from "../db/database.js";

/** Everything a component may use, built once per process by the composition root. */
export interface Dependencies {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly database: DatabaseHandle;
  readonly amqp: AmqpConnection;
  /** True while PostgreSQL answers and RabbitMQ is connected. */
  readonly isHealthy: () => Promise<boolean>;
}

/** A runnable part of the router (`broker run <name>`). */
export interface Component {
  readonly name: string;
  /** Begins work; resolves once the component is serving (or will serve as soon as it can). */
  start(): Promise<void>;
  /** Stops taking work, finishes or hands back what is in flight. Idempotent, bounded. */
  stop(): Promise<void>;
  /** Component-specific readiness on top of the shared PostgreSQL/RabbitMQ checks. */
  isReady?(): boolean;
  /**
   * True when the component keeps doing its work while RabbitMQ is down (the TTN webhook stores
   * into its outbox): /readyz then does not require RabbitMQ if every component says so.
   */
  readonly acceptsWithoutBroker?: boolean;
  /** The HTTP port the component listens on, if it has one (useful when configured as 0). */
  port?(): number | undefined;
}
