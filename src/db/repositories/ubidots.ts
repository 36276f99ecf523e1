import { sql } from "kysely";

import type { JsonObject } from "../../core/devices.js";
import { withActor } from "../../events/actor.js";
import { toJson } from "../database.js";
import type { Db } from "../database.js";

/** The Ubidots writer's view of a logical device and the physical devices of its messages. */

export interface UbidotsLogicalDevice {
  readonly uid: number;
  readonly name: string;
  readonly location: { readonly lat: number; readonly long: number } | null;
  /** `properties.ubidots`, when an object. */
  readonly ubidots: JsonObject | undefined;
}

export interface UbidotsPhysicalDevice {
  readonly uid: number;
  readonly sourceName: string;
  readonly location: { readonly lat: number; readonly long: number } | null;
  readonly sourceIds: JsonObject;
  readonly properties: JsonObject;
}

const ACTOR = "component:ubidots";

function point(lat: unknown, long: unknown): { lat: number; long: number } | null {
  return typeof lat === "number" && typeof long === "number" ? { lat, long } : null;
}

function object(value: unknown): JsonObject | undefined {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as JsonObject)
    : undefined;
}

export async function loadUbidotsLogicalDevice(
  db: Db,
  uid: number,
): Promise<UbidotsLogicalDevice | undefined> {
  const { rows } = await sql<{
    uid: number;
    name: string;
    lat: number | null;
    long: number | null;
    ubidots: unknown;
  }>`
    select uid, name, ST_Y(location) as lat, ST_X(location) as long,
           properties -> 'ubidots' as ubidots
    from logical_devices where uid = ${uid}`.execute(db);
  const row = rows[0];
  return (
    row && {
      uid: row.uid,
      name: row.name,
      location: point(row.lat, row.long),
      ubidots: object(row.ubidots),
    }
  );
}

export async function loadUbidotsPhysicalDevice(
  db: Db,
  uid: number,
): Promise<UbidotsPhysicalDevice | undefined> {
  const { rows } = await sql<{
    uid: number;
    source_name: string;
    lat: number | null;
    long: number | null;
    source_ids: unknown;
    properties: unknown;
  }>`
    select uid, source_name, ST_Y(location) as lat, ST_X(location) as long, source_ids, properties
    from physical_devices where uid = ${uid}`.execute(db);
  const row = rows[0];
  return (
    row && {
      uid: row.uid,
      sourceName: row.source_name,
      location: point(row.lat, row.long),
      sourceIds: object(row.source_ids) ?? {},
      properties: object(row.properties) ?? {},
    }
  );
}

/**
 * Stores `candidate` as the device's Ubidots label unless it has one already, and returns the
 * label in force. One UPDATE guarded by "no label yet": of two writers racing on a new device,
 * the second waits for the first's row lock, finds the label set, changes nothing, and reads the
 * first one's label. Undefined when the logical device does not exist.
 */
export async function claimUbidotsLabel(
  db: Db,
  uid: number,
  candidate: string,
): Promise<string | undefined> {
  return withActor(db, ACTOR, async (trx) => {
    await sql`
      update logical_devices set properties = jsonb_set(
        properties, '{ubidots}',
        case when jsonb_typeof(properties -> 'ubidots') = 'object' then properties -> 'ubidots'
             else '{}'::jsonb end || jsonb_build_object('label', ${candidate}::text))
      where uid = ${uid} and jsonb_typeof(properties -> 'ubidots' -> 'label') is distinct from 'string'`.execute(
      trx,
    );
    const { rows } = await sql<{ label: string | null }>`
      select properties -> 'ubidots' ->> 'label' as label from logical_devices
      where uid = ${uid}`.execute(trx);
    return rows[0]?.label ?? undefined;
  });
}

/**
 * Stores Ubidots' v2.0 device record as `properties.ubidots`, as IoTa does, keeping the label
 * the writer sends to (the record's own `label` is the same one; kept explicitly in case the
 * record lacks it). Only while the stored label is still `label`.
 */
export async function storeUbidotsDevice(
  db: Db,
  uid: number,
  label: string,
  record: JsonObject,
): Promise<void> {
  await withActor(db, ACTOR, async (trx) => {
    await sql`
      update logical_devices
      set properties = jsonb_set(properties, '{ubidots}',
                                 ${toJson(record)}::jsonb || jsonb_build_object('label', ${label}::text))
      where uid = ${uid} and properties -> 'ubidots' ->> 'label' = ${label}`.execute(trx);
  });
}
