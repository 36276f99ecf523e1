import type { Timestamp } from "../core/timestamps.js";

/**
 * Python-style writing of times for the MQTT sources, whose IoTa output is Python's
 * `datetime.isoformat()` (`2025-09-11T05:13:20+00:00`, microseconds only when not zero). Reading
 * is `core/timestamps.ts`'s (one grammar for every source). Pure; exact for every year, since
 * the instant is a bigint of microseconds.
 */

const pad = (n: number | bigint, width = 2): string => String(n).padStart(width, "0");

/**
 * Python's `isoformat()` of an aware datetime at `offsetMinutes` (default UTC):
 * `YYYY-MM-DDThh:mm:ss[.ffffff]±hh:mm`.
 */
export function pythonIsoformat(epochMicros: bigint, offsetMinutes = 0): string {
  const localMicros = epochMicros + BigInt(offsetMinutes) * 60_000_000n;
  const micros = ((localMicros % 1_000_000n) + 1_000_000n) % 1_000_000n;
  const t = new Date(Number((localMicros - micros) / 1000n));
  const date = `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  const clock = `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}`;
  const fraction = micros === 0n ? "" : `.${pad(micros, 6)}`;
  const sign = offsetMinutes < 0 ? "-" : "+";
  const abs = Math.abs(offsetMinutes);
  return `${date}T${clock}${fraction}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The same instant re-written the Python way, keeping its own offset (naive stays UTC). */
export function reformatIso(value: Timestamp): string {
  return pythonIsoformat(value.epochMicros, value.offsetMinutes ?? 0);
}
