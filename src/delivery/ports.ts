import type {
  OpenPublisherOptions,
  OpenQueueOptions,
  Publisher,
  QueueIntake,
} from "../bus/ports.js";
import type { Config } from "../core/config.js";
import type { Logger } from "../core/logger.js";
import type { Metrics } from "../core/metrics.js";
import type { Db } from "../db/database.js";

/**
 * What the delivery side needs from the process around it. Declared here, wired in `src/app/`
 * (the composition root), so writers never depend on the application layer.
 */

/** A runnable writer; the shape `broker run` expects of every component. */
export interface WriterComponent {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  isReady(): boolean;
}

/** The infrastructure a writer uses, built once per process by the composition root. */
export interface WriterDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly db: Db;
  /** True while PostgreSQL answers and RabbitMQ is connected; decides errors of unknown kind. */
  isHealthy(): Promise<boolean>;
  openQueue(options: OpenQueueOptions): QueueIntake;
  openPublisher(options: OpenPublisherOptions): Publisher;
}
