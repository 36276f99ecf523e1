import { backoffDelay, sleep } from "../core/backoff.js";
import type { Logger } from "../core/logger.js";
import type { DatabaseHandle } from "../db/database.js";
import { latestEventId, listEvents } from "../db/repositories/events.js";
import type { EventFilter, RegistryEvent } from "./event.js";
import { EventListener } from "./listener.js";

export interface TailOptions {
  database: DatabaseHandle;
  logger: Logger;
  /** Start after this event id. Default: the newest event now (only new events are shown). */
  since?: number;
  /** Only events of this entity / operation. Default: all. */
  entity?: EventFilter["entity"];
  operation?: EventFilter["operation"];
  /** Called once per event, in id order. */
  onEvent: (event: RegistryEvent) => void;
  /** Ends the tail. */
  signal: AbortSignal;
  /** Longest wait between looks at the table when no notification arrives, in ms. Default 2 000. */
  pollMs?: number;
}

const PAGE = 500;

/**
 * Follows the event log straight from PostgreSQL (no RabbitMQ): reads everything after the last
 * id seen whenever a notification arrives, and every `pollMs` regardless. Rides out database
 * outages (retrying with backoff) until `signal` aborts.
 */
export async function tailEvents(options: TailOptions): Promise<void> {
  const { database, logger, signal } = options;
  const pollMs = options.pollMs ?? 2_000;
  let woken = false;
  let wake: (() => void) | undefined;
  const listener = new EventListener({
    pool: database.pool,
    logger,
    onWake: () => {
      woken = true;
      wake?.();
    },
  });
  listener.start();
  try {
    let last = options.since;
    let failures = 0;
    while (!signal.aborted) {
      woken = false;
      let events: RegistryEvent[];
      try {
        last ??= await latestEventId(database.db);
        const filter = { since: last, limit: PAGE, entity: options.entity };
        events = await listEvents(database.db, { ...filter, operation: options.operation });
        failures = 0;
      } catch (err) {
        const delay = backoffDelay(failures++, { maxMs: 10_000 });
        logger.warn({ err, retryInMs: delay }, "cannot read registry events now");
        await sleep(delay, signal);
        continue;
      }
      for (const event of events) {
        options.onEvent(event);
        last = event.id;
      }
      if (events.length === PAGE || woken) {
        continue;
      }
      const wait = new AbortController();
      wake = () => wait.abort();
      const stop = (): void => wait.abort();
      signal.addEventListener("abort", stop, { once: true });
      await sleep(pollMs, wait.signal);
      signal.removeEventListener("abort", stop);
      wake = undefined;
    }
  } finally {
    await listener.close();
  }
}
