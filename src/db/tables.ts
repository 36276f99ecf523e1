import type { ColumnType, Generated, Insertable, Selectable } from "kysely";

/**
 * Table types for kysely. Timestamps are read as ISO-8601 strings with microseconds (see the
 * timestamptz parser in database.ts) and may be written as strings or Dates. jsonb columns are
 * read as parsed values and written as JSON text (pg does not encode arrays as JSON by itself).
 * PostGIS `location` is never selected raw: repositories read ST_X/ST_Y and write ST_MakePoint.
 */
type Timestamp = ColumnType<string, string | Date, string | Date>;
type NullableTimestamp = ColumnType<string | null, string | Date | null, string | Date | null>;
type Json<T = unknown> = ColumnType<T, string, string>;
type NullableJson<T = unknown> = ColumnType<T | null, string | null, string | null>;
type JsonObject = Record<string, unknown>;

export interface SourcesTable {
  source_name: string;
}

export interface PhysicalDevicesTable {
  uid: Generated<number>;
  source_name: string;
  name: string;
  location: ColumnType<unknown, never, never>;
  last_seen: NullableTimestamp;
  source_ids: NullableJson<JsonObject>;
  properties: ColumnType<JsonObject, string | undefined, string>;
}

export interface LogicalDevicesTable {
  uid: Generated<number>;
  name: string;
  location: ColumnType<unknown, never, never>;
  last_seen: NullableTimestamp;
  properties: ColumnType<JsonObject, string | undefined, string>;
}

export interface PhysicalLogicalMapTable {
  physical_uid: number;
  logical_uid: number;
  start_time: ColumnType<string, string | Date | undefined, string | Date>;
  end_time: NullableTimestamp;
  is_active: ColumnType<boolean, boolean | undefined, boolean>;
}

export interface RawMessagesTable {
  uid: Generated<number>;
  source_name: string;
  physical_uid: number | null;
  correlation_id: string;
  ts: Timestamp;
  json_msg: NullableJson;
  text_msg: string | null;
  /** TTN: what every body of one uplink shares (009); NULL elsewhere. */
  uplink_key: string | null;
  /** Another body was stored for the same uplink_key (009). */
  conflicting: Generated<boolean>;
}

export interface PhysicalTimeseriesTable {
  uid: Generated<number>;
  physical_uid: number;
  logical_uid: number | null;
  received_at: ColumnType<string, string | Date | undefined, string | Date>;
  ts: Timestamp;
  ts_delta: ColumnType<unknown, never, never>;
  json_msg: Json<JsonObject>;
  msg_key: string | null;
}

export interface DeviceNotesTable {
  uid: Generated<number>;
  physical_uid: number | null;
  ts: ColumnType<string, string | Date | undefined, string | Date>;
  note: string;
}

export interface UsersTable {
  uid: Generated<number>;
  username: string;
  salt: string;
  password: string;
  auth_token: string;
  valid: boolean;
  read_only: ColumnType<boolean, boolean | undefined, boolean>;
}

export interface VersionTable {
  version: number;
}

/** Written only by the registry triggers (migration 008); `id` is bigint, read as text. */
export interface RegistryEventsTable {
  id: ColumnType<string, never, never>;
  occurred_at: ColumnType<string, never, never>;
  entity: ColumnType<string, never, never>;
  operation: ColumnType<string, never, never>;
  entity_id: ColumnType<string, never, never>;
  actor: ColumnType<string, never, never>;
  data: ColumnType<JsonObject, never, never>;
  published_at: NullableTimestamp;
}

export interface Database {
  sources: SourcesTable;
  physical_devices: PhysicalDevicesTable;
  logical_devices: LogicalDevicesTable;
  physical_logical_map: PhysicalLogicalMapTable;
  raw_messages: RawMessagesTable;
  physical_timeseries: PhysicalTimeseriesTable;
  device_notes: DeviceNotesTable;
  users: UsersTable;
  version: VersionTable;
  registry_events: RegistryEventsTable;
}

export type RawMessageRow = Selectable<RawMessagesTable>;
export type NewRawMessage = Insertable<RawMessagesTable>;
export type NewPhysicalTimeseries = Insertable<PhysicalTimeseriesTable>;
