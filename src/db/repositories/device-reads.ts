import type pg from "pg";

import type { LogicalDevice, PhysicalDevice } from "../../core/devices.js";
import {
  deviceColumnsText,
  logicalDeviceFromRow,
  physicalDeviceColumnsText,
  physicalDeviceFromRow,
  type Row,
} from "./device-rows.js";

/**
 * One device by uid on pg alone (no kysely): the CLI's `pd get` and `ld get`, which operators
 * run in loops, load only pg. The same columns and row mapping as the kysely repositories.
 */

type Queryable = Pick<pg.Pool, "query">;

const PD_BY_UID = `select ${physicalDeviceColumnsText("pd")} from physical_devices pd where pd.uid = $1`;
const LD_BY_UID = `select ${deviceColumnsText("ld")} from logical_devices ld where ld.uid = $1`;

/** The physical device `uid`, or undefined. */
export async function readPhysicalDevice(
  db: Queryable,
  uid: number,
): Promise<PhysicalDevice | undefined> {
  const { rows } = await db.query<Row>(PD_BY_UID, [uid]);
  return rows[0] && physicalDeviceFromRow(rows[0]);
}

/** The logical device `uid`, or undefined. */
export async function readLogicalDevice(
  db: Queryable,
  uid: number,
): Promise<LogicalDevice | undefined> {
  const { rows } = await db.query<Row>(LD_BY_UID, [uid]);
  return rows[0] && logicalDeviceFromRow(rows[0]);
}
