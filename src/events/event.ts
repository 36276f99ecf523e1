import { z } from "zod";

import type { JsonObject } from "../core/devices.js";

/**
 * The registry event: one row of `registry_events`, written by the database's triggers
 * (db/migrations/008_registry_events.sql) in the same transaction as the change it records, and
 * the body of the message the relay publishes. Format and guarantees: doc/events.md.
 */

export const EVENT_ENTITIES = [
  "physical_device",
  "logical_device",
  "mapping",
  "note",
  "user",
] as const;
export type EventEntity = (typeof EVENT_ENTITIES)[number];

/** `start`, `end`, `pause` and `resume` are mapping operations; the others apply to everything. */
export const EVENT_OPERATIONS = [
  "create",
  "update",
  "delete",
  "start",
  "end",
  "pause",
  "resume",
] as const;
export type EventOperation = (typeof EVENT_OPERATIONS)[number];

/**
 * What changed. Rows are the table's columns (location as `{lat, long}`, without
 * `properties.last_msg`, without secrets). `after` on create/start, `before` on delete, both plus
 * `changed` (column names, secret ones included) on every other operation.
 */
export interface EventData {
  before?: JsonObject;
  after?: JsonObject;
  changed?: string[];
}

export interface RegistryEvent {
  /** Position in the log: events are written, published and replayed in id order. */
  id: number;
  /** When the change was committed, ISO-8601 with microseconds. */
  occurred_at: string;
  entity: EventEntity;
  operation: EventOperation;
  /** uid, or `<physical_uid>:<logical_uid>:<start_time>` for a mapping. */
  entity_id: string;
  /** Who made the change: `cli:<user>`, `component:<source>`, an API user…; `database` if unset. */
  actor: string;
  data: EventData;
}

/** The routing key on the events topic exchange, e.g. `mapping.end`. */
export function routingKey(event: Pick<RegistryEvent, "entity" | "operation">): string {
  return `${event.entity}.${event.operation}`;
}

/** Largest page of events one read returns. */
export const MAX_EVENT_PAGE = 1000;

/**
 * A count or id given as decimal text (query strings and CLI options are text); `0x10`, `1e3`
 * and an empty value are refused.
 */
function decimal(what: string) {
  return z
    .string()
    .trim()
    .regex(/^\d{1,15}$/, `${what} must be a whole number written in digits`)
    .transform(Number);
}

/**
 * A read of the log: events after `since` (an event id; 0 = from the start) and before `before`,
 * optionally of one entity kind, operation, entity id and actor, oldest first (or newest first), at most `limit` (default 100, at most 1000). Parses query
 * strings and CLI options alike; unknown keys are refused, so a misspelt filter is an error
 * rather than silently ignored.
 */
export const eventFilterSchema = z.strictObject({
  since: decimal("since").default(0),
  entity: z.enum(EVENT_ENTITIES).optional(),
  operation: z.enum(EVENT_OPERATIONS).optional(),
  limit: decimal("limit").pipe(z.number().min(1).max(MAX_EVENT_PAGE)).default(100),
  /** Only events of this entity (a device uid, a user name, `<pd>:<start>` of a mapping…). */
  entity_id: z.string().trim().min(1).max(200).optional(),
  /** Only events made by this actor (`api:<user>`, `cli:<os user>`, `system`…). */
  actor: z.string().trim().min(1).max(200).optional(),
  /** Only events older than this id (paging backwards with `order=desc`). */
  before: decimal("before").optional(),
  /** `asc` (the default: oldest first, for readers that follow the log) or `desc` (newest first). */
  order: z.enum(["asc", "desc"]).optional(),
});

export type EventFilter = z.infer<typeof eventFilterSchema>;

/** One line naming every problem of a failed {@link eventFilterSchema} parse. */
export function describeFilterError(error: z.ZodError): string {
  return error.issues
    .map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message))
    .join("; ");
}
