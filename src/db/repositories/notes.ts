import { sql, type Kysely } from "kysely";

import type { Database } from "../tables.js";
import { FOREIGN_KEY_VIOLATION, RegistryError, sqlState } from "./registry-error.js";

/** A note on a physical device (IoTa's DeviceNote: exactly these fields, in this order). */
export interface DeviceNote {
  uid: number;
  ts: string;
  note: string;
}

type Row = Record<string, unknown>;

function noteFromRow(row: Row): DeviceNote {
  return { uid: row.uid as number, ts: row.ts as string, note: row.note as string };
}

/** Adds a note to physical device `puid`; an unknown device is a `not_found` RegistryError. */
export async function createNote(
  db: Kysely<Database>,
  puid: number,
  note: string,
): Promise<DeviceNote> {
  try {
    const { rows } = await sql<Row>`
      insert into device_notes (physical_uid, note) values (${puid}, ${note})
      returning uid, ts, note`.execute(db);
    return noteFromRow(rows[0] as Row);
  } catch (err) {
    if (sqlState(err) === FOREIGN_KEY_VIOLATION) {
      throw new RegistryError("not_found", `physical device ${puid} not found`, { cause: err });
    }
    throw err;
  }
}

/** The notes of physical device `puid`, oldest first (IoTa's order), optionally one page. */
export async function listNotes(
  db: Kysely<Database>,
  puid: number,
  page: { limit?: number; offset?: number } = {},
): Promise<DeviceNote[]> {
  const { rows } = await sql<Row>`
    select uid, ts, note from device_notes where physical_uid = ${puid} order by ts, uid
    limit ${page.limit ?? null} offset ${page.offset ?? 0}`.execute(db);
  return rows.map(noteFromRow);
}

/**
 * Changes a note's text and, when given, its time (IoTa always set both; a missing time made it
 * fail). Returns the note as stored, or undefined when there is no such note.
 */
export async function updateNote(
  db: Kysely<Database>,
  uid: number,
  change: { note: string; ts?: string },
): Promise<DeviceNote | undefined> {
  const { rows } = await sql<Row>`
    update device_notes set note = ${change.note},
                            ts = coalesce(${change.ts ?? null}::timestamptz, ts)
    where uid = ${uid} returning uid, ts, note`.execute(db);
  return rows[0] && noteFromRow(rows[0]);
}

/** Deletes a note; false when there was none. */
export async function deleteNote(db: Kysely<Database>, uid: number): Promise<boolean> {
  const result = await sql`delete from device_notes where uid = ${uid}`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}
