/**
 * The Dragino models IoTa knows (reference §4.3), as data, and its counter de-accumulation. Pure.
 */

/** A value taken from each buffered record (an array whose last element is its timestamp). */
export interface RecordField {
  /** Position in the record array. */
  readonly index: number;
  /** Point name. */
  readonly name: string;
  /**
   * The value is a running counter: each record gets the increase since the record before it.
   * `systemVar` names the top-level counter that gives the increase since the newest record;
   * `limit` is the counter's largest value before it wraps to 0.
   */
  readonly accumulating?: { readonly systemVar?: string; readonly limit?: number };
}

export interface DraginoModel {
  /** Top-level keys published as points of the uplink's own message, in this order. */
  readonly systemVars: readonly string[];
  readonly fields: readonly RecordField[];
}

const SYSTEM_VARS = ["Model", "IMEI", "IMSI", "battery", "signal"] as const;

/** IoTa's model table, keyed by the payload's `Model`. */
export const DRAGINO_MODELS: Readonly<Record<string, DraginoModel>> = {
  "CPL03-CB": {
    systemVars: SYSTEM_VARS,
    fields: [
      {
        index: 2,
        name: "pulse1",
        accumulating: { systemVar: "count time1", limit: 16_777_215 },
      },
    ],
  },
  "S31x-CB": {
    systemVars: SYSTEM_VARS,
    fields: [
      { index: 0, name: "temperature" },
      { index: 1, name: "humidity" },
    ],
  },
};

/**
 * The increase of a counter from `prev` to `cur`. A drop means the counter started again: when
 * it had climbed past half of its `limit`, it wrapped (the increase counts through the limit
 * and 0); otherwise the device reset it and `cur` pulses were counted since (IoTa's rule, which
 * ignored the limit and so turned every wrap into a reset).
 */
export function decumulate(cur: number, prev: number, limit?: number): number {
  if (prev <= cur) {
    return cur - prev;
  }
  if (limit !== undefined && prev > limit / 2 && prev <= limit && cur <= limit) {
    return limit - prev + 1 + cur;
  }
  return cur;
}
