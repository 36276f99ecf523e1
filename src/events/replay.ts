import type { JsonObject } from "../core/devices.js";
import type { EventEntity, RegistryEvent } from "./event.js";

/**
 * Rebuilds the registry from its event log. Every event carries the whole row after the change
 * (and before it), so replaying is "the last `after` wins, `delete` removes": no event depends on
 * having seen the ones before it to be understood, only on order. Pure: no I/O.
 *
 * What the rows hold is what the events hold (doc/events.md): every column, location as
 * `{lat, long}`, no `properties.last_msg`, no secrets; `last_seen` as of the last event, since
 * sightings emit none.
 */

export type RegistryRow = JsonObject;

export interface RegistryState {
  /** By uid. */
  readonly physicalDevices: Map<number, RegistryRow>;
  /** By uid. */
  readonly logicalDevices: Map<number, RegistryRow>;
  /** By `<physical_uid>:<logical_uid>:<start_time>` (the event's entity id). */
  readonly mappings: Map<string, RegistryRow>;
  /** By uid. */
  readonly notes: Map<number, RegistryRow>;
  /** By uid, without password, salt or tokens. */
  readonly users: Map<number, RegistryRow>;
  /** The id of the last event applied; 0 before the first. */
  lastEventId: number;
}

export function emptyRegistryState(): RegistryState {
  return {
    physicalDevices: new Map(),
    logicalDevices: new Map(),
    mappings: new Map(),
    notes: new Map(),
    users: new Map(),
    lastEventId: 0,
  };
}

/** The key a mapping row has in {@link RegistryState.mappings}, the same as its entity id. */
export function mappingKey(row: RegistryRow): string {
  return `${String(row.physical_uid)}:${String(row.logical_uid)}:${String(row.start_time)}`;
}

type AnyTable = Map<number | string, RegistryRow>;

function tableOf(state: RegistryState, entity: EventEntity): AnyTable {
  switch (entity) {
    case "physical_device":
      return state.physicalDevices as AnyTable;
    case "logical_device":
      return state.logicalDevices as AnyTable;
    case "mapping":
      return state.mappings as AnyTable;
    case "note":
      return state.notes as AnyTable;
    case "user":
      return state.users as AnyTable;
  }
}

function keyOf(entity: EventEntity, row: RegistryRow): number | string {
  return entity === "mapping" ? mappingKey(row) : (row.uid as number);
}

/**
 * Applies one event to `state`. An event whose id is not above the last one applied has been
 * applied already (delivery is at least once) and is skipped: returns false. Throws on an event
 * that lacks the row its operation needs.
 */
export function applyEvent(state: RegistryState, event: RegistryEvent): boolean {
  if (event.id <= state.lastEventId) {
    return false;
  }
  const table = tableOf(state, event.entity);
  const { before, after } = event.data;
  if (event.operation === "delete") {
    if (!before) {
      throw new Error(`event ${event.id} (${event.entity}.delete) has no "before" row`);
    }
    table.delete(keyOf(event.entity, before));
  } else {
    if (!after) {
      throw new Error(`event ${event.id} (${event.entity}.${event.operation}) has no "after" row`);
    }
    // An update may change the key itself (a mapping's start time, in psql).
    if (before) {
      table.delete(keyOf(event.entity, before));
    }
    table.set(keyOf(event.entity, after), after);
  }
  state.lastEventId = event.id;
  return true;
}

/** The registry as `events` (in id order) leave it, starting from `state` (default: empty). */
export function replay(
  events: Iterable<RegistryEvent>,
  state: RegistryState = emptyRegistryState(),
): RegistryState {
  for (const event of events) {
    applyEvent(state, event);
  }
  return state;
}
