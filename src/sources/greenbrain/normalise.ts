import { z } from "zod";

import type { Location } from "../../core/devices.js";
import { PermanentError } from "../../core/errors.js";
import type { TimeseriesPoint } from "../../core/message.js";
import { failed, parseVendorJson, rawBody, type Prepared } from "../pollers/prepared.js";
import { instantOf, pythonIsoformat, withOffset } from "../pollers/times.js";

/** A sensor group as the account's bootstrap lists it, with its station's details. */
export interface SensorGroupRef {
  readonly id: number;
  readonly name?: string;
  readonly systemId?: number;
  readonly stationId?: number;
  readonly stationName?: string;
  readonly latitude?: unknown;
  readonly longitude?: unknown;
}

const sensorGroupSchema = z.looseObject({ id: z.number().int(), name: z.string().nullish() });

const bootstrapSchema = z.looseObject({
  systems: z.array(
    z.looseObject({
      id: z.number().int().nullish(),
      stations: z
        .array(
          z.looseObject({
            id: z.number().int().nullish(),
            name: z.string().nullish(),
            systemId: z.number().int().nullish(),
            latitude: z.unknown(),
            longitude: z.unknown(),
            sensorGroups: z.array(sensorGroupSchema).nullish(),
          }),
        )
        .nullish(),
    }),
  ),
});

const latestSchema = z.looseObject({
  sensorGroup: sensorGroupSchema,
  sensorTypes: z.record(
    z.string(),
    z.looseObject({
      name: z.string().nullish(),
      sensors: z.array(
        z.looseObject({ name: z.string().min(1), value: z.unknown(), time: z.unknown() }),
      ),
    }),
  ),
});
type Latest = z.infer<typeof latestSchema>;

function problems(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
}

/** The sensor groups of a `GET /bootstrap` answer (systems → stations → sensorGroups). */
export function sensorGroupsOf(bootstrap: unknown): SensorGroupRef[] {
  const parsed = bootstrapSchema.safeParse(bootstrap);
  if (!parsed.success) {
    throw new PermanentError("invalid_bootstrap", `not a bootstrap: ${problems(parsed.error)}`);
  }
  return parsed.data.systems.flatMap((system) =>
    (system.stations ?? []).flatMap((station) =>
      (station.sensorGroups ?? []).map((group) => ({
        id: group.id,
        name: group.name ?? undefined,
        systemId: station.systemId ?? system.id ?? undefined,
        stationId: station.id ?? undefined,
        stationName: station.name ?? undefined,
        latitude: station.latitude,
        longitude: station.longitude,
      })),
    ),
  );
}

/** IoTa's `float(lat), float(long)`, or null when either is missing or not a coordinate. */
function locationOf(group: SensorGroupRef): Location | null {
  const num = (v: unknown): number =>
    typeof v === "number" || (typeof v === "string" && v.trim() !== "") ? Number(v) : Number.NaN;
  const lat = num(group.latitude);
  const long = num(group.longitude);
  return Math.abs(lat) <= 90 && Math.abs(long) <= 180 ? { lat, long } : null;
}

/**
 * Point names. IoTa used the sensor's name alone, and names such as `10cm` occur under several
 * sensor types (soil moisture and soil temperature), so their points collided. A name that occurs
 * under more than one sensor type of the response is prefixed with its type's name
 * (`Soil Moisture Content 10cm`); every other name stays IoTa's.
 */
function pointNames(latest: Latest): Map<string, Map<string, string>> {
  const typesPerName = new Map<string, number>();
  for (const type of Object.values(latest.sensorTypes)) {
    for (const name of new Set(type.sensors.map((s) => s.name))) {
      typesPerName.set(name, (typesPerName.get(name) ?? 0) + 1);
    }
  }
  const names = new Map<string, Map<string, string>>();
  for (const [key, type] of Object.entries(latest.sensorTypes)) {
    const label = type.name?.trim() || key;
    const byName = new Map<string, string>();
    for (const s of type.sensors) {
      byName.set(s.name, (typesPerName.get(s.name) ?? 0) > 1 ? `${label} ${s.name}` : s.name);
    }
    names.set(key, byName);
  }
  return names;
}

interface Reading {
  readonly name: string;
  readonly value: unknown;
  readonly time: string;
}

/** The readings of a response; a sensor with a value but no usable time is bad content. */
function readingsOf(latest: Latest): Reading[] {
  const names = pointNames(latest);
  const readings: Reading[] = [];
  for (const [key, type] of Object.entries(latest.sensorTypes)) {
    for (const sensor of type.sensors) {
      if (sensor.value === null || sensor.value === undefined) {
        continue; // no reading: nothing to publish (the raw copy keeps it)
      }
      const time = typeof sensor.time === "string" ? withOffset(sensor.time) : undefined;
      if (time === undefined) {
        throw new PermanentError(
          "invalid_timestamp",
          `sensor ${JSON.stringify(sensor.name)} of ${key} has time ${JSON.stringify(sensor.time)}, not an ISO-8601 date-time`,
        );
      }
      readings.push({
        name: names.get(key)?.get(sensor.name) ?? sensor.name,
        value: sensor.value,
        time,
      });
    }
  }
  return readings;
}

/**
 * IoTa's GreenBrain rules for one `GET /sensor-groups/{id}/latest` response, pure. Every sensor
 * reading (`sensorTypes.*.sensors[]`) becomes a point; the message time is the newest reading's
 * time, written as Python's isoformat; a reading at another time carries its own. Times without
 * an offset are UTC (IoTa appended `Z`). The device is found by `sensor_group_id` (an integer)
 * and created with the bootstrap's station details. Never throws: unusable content is kept raw
 * and rejected when normalised.
 */
export function prepareLatest(
  text: string,
  group: SensorGroupRef,
  correlationId: string,
): Prepared {
  let json: unknown;
  let latest: Latest;
  let readings: Reading[];
  try {
    json = parseVendorJson(text);
    const parsed = latestSchema.safeParse(json);
    if (!parsed.success) {
      throw new PermanentError(
        "invalid_response",
        `not a sensor group reading: ${problems(parsed.error)}`,
      );
    }
    latest = parsed.data;
    if (latest.sensorGroup.id !== group.id) {
      throw new PermanentError(
        "wrong_sensor_group",
        `asked for sensor group ${group.id}, the answer is about ${latest.sensorGroup.id}`,
      );
    }
    readings = readingsOf(latest);
  } catch (err) {
    if (err instanceof PermanentError) {
      return failed(text, err);
    }
    throw err;
  }

  const newestReading = readings.reduce<Reading | undefined>(
    (a, r) => (a === undefined || instantOf(r.time) > instantOf(a.time) ? r : a),
    undefined,
  );
  if (newestReading === undefined) {
    return { newest: undefined, raw: rawBody(text, json), normalise: () => undefined };
  }
  const newestMs = instantOf(newestReading.time);
  const timestamp = pythonIsoformat(newestReading.time);
  const timeseries: TimeseriesPoint[] = readings.map((r) =>
    instantOf(r.time) === newestMs
      ? { name: r.name, value: r.value as TimeseriesPoint["value"] }
      : {
          name: r.name,
          value: r.value as TimeseriesPoint["value"],
          timestamp: pythonIsoformat(r.time),
        },
  );
  const sourceIds = {
    sensor_group_id: group.id,
    ...(group.systemId === undefined ? {} : { system_id: group.systemId }),
    ...(group.stationId === undefined ? {} : { station_id: group.stationId }),
    ...(group.stationName === undefined ? {} : { station_name: group.stationName }),
  };
  return {
    newest: timestamp,
    raw: rawBody(text, json),
    normalise: () => ({
      device: {
        lookup: { sensor_group_id: group.id },
        create: {
          name: latest.sensorGroup.name ?? group.name ?? String(group.id),
          location: locationOf(group),
          source_ids: sourceIds,
          properties: { greenbrain: json, creation_correlation_id: correlationId },
        },
        sighting: { lastSeen: timestamp, sourceIds },
      },
      messages: (pUid) => [
        { broker_correlation_id: correlationId, p_uid: pUid, timestamp, timeseries },
      ],
    }),
  };
}
