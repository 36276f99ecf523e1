/**
 * Pure arithmetic of the health page: the message counters read from a process's /metrics text,
 * and rates between two readings.
 */

/** Cumulative counts of one component, from `broker_messages_*_total`. */
export interface ComponentCounters {
  in: number;
  out: number;
  dead_lettered: number;
}

const COUNTERS: Readonly<Record<string, keyof ComponentCounters>> = {
  broker_messages_in_total: "in",
  broker_messages_out_total: "out",
  broker_messages_dead_lettered_total: "dead_lettered",
};

/**
 * Sums the message counters of a Prometheus text exposition per `component` label (dead letters
 * of every reason together). Lines that are not one of the counters are ignored.
 */
export function parseCounters(text: string): Record<string, ComponentCounters> {
  const out: Record<string, ComponentCounters> = {};
  for (const line of text.split("\n")) {
    const match = /^(\w+)\{([^}]*)\}\s+(\S+)/.exec(line);
    const field = match ? COUNTERS[match[1]!] : undefined;
    if (!match || field === undefined) {
      continue;
    }
    const component = /(?:^|,)component="((?:[^"\\]|\\.)*)"/.exec(match[2]!)?.[1];
    const value = Number(match[3]);
    if (component === undefined || !Number.isFinite(value)) {
      continue;
    }
    out[component] ??= { in: 0, out: 0, dead_lettered: 0 };
    out[component][field] += value;
  }
  return out;
}

/** Per-second rate of each counter between two readings `seconds` apart; a restart reads 0. */
export function counterRates(
  before: Record<string, ComponentCounters>,
  after: Record<string, ComponentCounters>,
  seconds: number,
): Record<string, ComponentCounters> {
  const rate = (a: number, b: number) => (b >= a ? (b - a) / seconds : 0);
  const out: Record<string, ComponentCounters> = {};
  for (const [component, now] of Object.entries(after)) {
    const then = before[component] ?? { in: 0, out: 0, dead_lettered: 0 };
    out[component] = {
      in: rate(then.in, now.in),
      out: rate(then.out, now.out),
      dead_lettered: rate(then.dead_lettered, now.dead_lettered),
    };
  }
  return out;
}

/**
 * Keeps recent readings per key so that a rate is measured over at least `minSeconds`, however
 * often the page is polled (or by how many operators): a reading is compared with the newest one
 * at least that old, or, early on, with the oldest one kept (when at least a second old).
 */
export class RateBase<T> {
  readonly #minSeconds: number;
  readonly #readings = new Map<string, { at: number; value: T }[]>();

  /** `minSeconds`: shortest period a rate is measured over, in seconds. */
  constructor(minSeconds: number) {
    this.#minSeconds = minSeconds;
  }

  /** Records `value` read at `at` (seconds) and returns the reading to compare it with. */
  advance(key: string, at: number, value: T): { value: T; seconds: number } | undefined {
    const kept = (this.#readings.get(key) ?? []).filter(
      (r) => r.at <= at && at - r.at <= 4 * this.#minSeconds,
    );
    const old = kept.filter((r) => at - r.at >= this.#minSeconds);
    const base = old.length > 0 ? old[old.length - 1] : kept[0];
    // Old enough ones but the newest are of no more use.
    const rest = old.length > 1 ? kept.slice(old.length - 1) : kept;
    this.#readings.set(key, [...rest, { at, value }].slice(-64));
    return base !== undefined && at - base.at >= 1
      ? { value: base.value, seconds: at - base.at }
      : undefined;
  }
}
