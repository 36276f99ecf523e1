import type { Location } from "../../core/devices.js";

/**
 * Device metadata from The Things Stack, pure rules. A device created from an uplink carries
 * `properties.ttn_metadata_pending` until its API record has been fetched; the marker records
 * the name the device was given at creation, so the fetch never overwrites a name an operator
 * chose in the meantime.
 */
export const METADATA_PENDING_KEY = "ttn_metadata_pending";

export interface PendingMarker {
  /** The placeholder name given at creation (the TTN device id). */
  readonly name: string;
  /** When the device was created (arrival time of its first uplink). */
  readonly since: string;
}

export function pendingMarker(name: string, since: string): PendingMarker {
  return { name, since };
}

/** What IoTa takes from the API record: the name and the user-set location. */
export interface DeviceMetadata {
  readonly name: string | undefined;
  readonly location: Location | null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function coordinate(value: unknown, limit: number): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && Math.abs(value) <= limit
    ? value
    : undefined;
}

/**
 * IoTa's rules: name = the API `name` when present; location = `locations.user.latitude` /
 * `longitude` when both are present (and, beyond IoTa, valid degrees).
 */
export function metadataFromApi(record: unknown): DeviceMetadata {
  if (!isRecord(record)) {
    return { name: undefined, location: null };
  }
  const name =
    typeof record.name === "string" && record.name.trim() !== "" ? record.name : undefined;
  const locations = isRecord(record.locations) ? record.locations : undefined;
  const user = locations && isRecord(locations.user) ? locations.user : undefined;
  const lat = coordinate(user?.latitude, 90);
  const long = coordinate(user?.longitude, 180);
  return { name, location: lat !== undefined && long !== undefined ? { lat, long } : null };
}
