/**
 * ISO-8601 reading and Python-style writing for the MQTT sources, whose IoTa output is Python's
 * `datetime.isoformat()` (`2025-09-11T05:13:20+00:00`, microseconds only when not zero). Pure.
 */

/** A parsed date-time: microseconds since the epoch, and the offset it was written with. */
export interface IsoDateTime {
  /** Microseconds since 1970-01-01T00:00:00Z (a naive value is read as UTC). */
  readonly epochMicros: number;
  /** Minutes east of UTC, or undefined when the text named no offset (naive). */
  readonly offsetMinutes: number | undefined;
  /** The calendar year as written (IoTa's "clock not synchronised" test looks at it). */
  readonly year: number;
}

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * Reads `YYYY-MM-DD[(T| )hh[:mm[:ss[.f…]]]][Z|±hh[:mm]]`: what Python 3.10's
 * `datetime.fromisoformat` and dateutil's `isoparse` accept in practice, plus a `Z` suffix
 * (which 3.10's `fromisoformat` refused). Fractions beyond microseconds are truncated.
 * Returns undefined for anything else, including impossible dates (2023-02-30).
 */
export function parseIsoDateTime(text: string): IsoDateTime | undefined {
  const m = ISO.exec(text.trim());
  if (!m) {
    return undefined;
  }
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const year = Number(y);
  const month = Number(mo) - 1;
  const day = Number(d);
  const hour = Number(h ?? 0);
  const minute = Number(mi ?? 0);
  const second = Number(s ?? 0);
  const ms = Date.UTC(year, month, day, hour, minute, second);
  const check = new Date(ms);
  // Date.UTC rolls impossible values over (Feb 30 -> Mar 2); refuse them instead.
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month ||
    check.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    return undefined;
  }
  let offsetMinutes: number | undefined;
  if (zone !== undefined) {
    if (zone.toUpperCase() === "Z") {
      offsetMinutes = 0;
    } else {
      const digits = zone.slice(1).replace(":", "");
      const hh = Number(digits.slice(0, 2));
      const mm = Number(digits.slice(2, 4) || "0");
      if (hh > 23 || mm > 59) {
        return undefined;
      }
      offsetMinutes = (zone.startsWith("-") ? -1 : 1) * (hh * 60 + mm);
    }
  }
  const micros = frac ? Number(frac.slice(0, 6).padEnd(6, "0")) : 0;
  // Below 2^53: safe for any year up to 285 000.
  const epochMicros = (ms - (offsetMinutes ?? 0) * 60_000) * 1000 + micros;
  return { epochMicros, offsetMinutes, year };
}

const pad = (n: number, width = 2): string => String(n).padStart(width, "0");

/**
 * Python's `isoformat()` of an aware datetime at `offsetMinutes` (default UTC):
 * `YYYY-MM-DDThh:mm:ss[.ffffff]±hh:mm`.
 */
export function pythonIsoformat(epochMicros: number, offsetMinutes = 0): string {
  const localMicros = epochMicros + offsetMinutes * 60_000_000;
  const micros = ((localMicros % 1_000_000) + 1_000_000) % 1_000_000;
  const t = new Date((localMicros - micros) / 1000);
  const date = `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  const clock = `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}`;
  const fraction = micros === 0 ? "" : `.${pad(micros, 6)}`;
  const sign = offsetMinutes < 0 ? "-" : "+";
  const abs = Math.abs(offsetMinutes);
  return `${date}T${clock}${fraction}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The same instant re-written the Python way, keeping its own offset (naive stays UTC). */
export function reformatIso(value: IsoDateTime): string {
  return pythonIsoformat(value.epochMicros, value.offsetMinutes ?? 0);
}
