import type { Db } from "../../src/db/database.js";
import { latestEventId, listEvents } from "../../src/db/repositories/events.js";
import type { RegistryEvent } from "../../src/events/event.js";

/** Runs `fn`, then returns the registry events it caused, in id order. */
export async function eventsOf(db: Db, fn: () => Promise<unknown>): Promise<RegistryEvent[]> {
  const since = await latestEventId(db);
  await fn();
  return listEvents(db, { since, limit: 1000 });
}

/** The events reduced to `entity.operation actor`. */
export function summary(events: RegistryEvent[]): string[] {
  return events.map((e) => `${e.entity}.${e.operation} ${e.actor}`);
}
