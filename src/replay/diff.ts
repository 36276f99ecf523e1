/**
 * What a replay changes for one raw message, pure: the normalised messages stored from its
 * earlier run against those its replay produces. Messages are matched by physical device,
 * correlation id and timestamp; points within a message by name and own timestamp. Values are
 * compared as JSON with keys in a fixed order (jsonb does not keep the producer's order), so a
 * message that only comes back with its keys or its points reordered is unchanged.
 */

/** A normalised message as the diff sees it (stored or replayed). */
export interface DiffMessage {
  readonly p_uid: number;
  readonly broker_correlation_id: string;
  readonly timestamp: string;
  readonly timeseries: readonly {
    readonly name: string;
    readonly value: unknown;
    readonly timestamp?: string | undefined;
  }[];
  readonly [key: string]: unknown;
}

export interface RawDiff {
  /** False when the replay would store exactly what is stored (nothing is then done). */
  readonly changed: boolean;
  readonly messagesAdded: number;
  readonly messagesRemoved: number;
  /** Points present before and after whose value differs. */
  readonly valuesChanged: number;
  readonly pointsAdded: number;
  readonly pointsRemoved: number;
  /** Physical devices whose stored messages change. */
  readonly devices: readonly number[];
}

/** JSON text with object keys sorted at every level: equal exactly when the values are equal. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(",")}]`;
  }
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function messageId(m: DiffMessage): string {
  return `${m.p_uid}\u0000${m.broker_correlation_id}\u0000${m.timestamp}`;
}

function pointsOf(m: DiffMessage): Map<string, string> {
  const points = new Map<string, string>();
  for (const p of m.timeseries) {
    points.set(`${p.name}\u0000${p.timestamp ?? ""}`, canonicalJson(p.value));
  }
  return points;
}

/**
 * The message without l_uid (set by routing, not by the normaliser), its points in a fixed
 * order: a TTN payload's keys come back from jsonb reordered, and so would its points.
 */
function content(m: DiffMessage): string {
  const { l_uid: _routed, timeseries, ...rest } = m;
  const points = timeseries.map(canonicalJson).sort();
  return `${canonicalJson(rest)}\u0000${points.join("\u0000")}`;
}

export function diffRawMessage(
  stored: readonly DiffMessage[],
  replayed: readonly DiffMessage[],
): RawDiff {
  const before = new Map(stored.map((m) => [messageId(m), m]));
  const after = new Map(replayed.map((m) => [messageId(m), m]));
  let messagesAdded = 0;
  let messagesRemoved = 0;
  let valuesChanged = 0;
  let pointsAdded = 0;
  let pointsRemoved = 0;
  const devices = new Set<number>();
  for (const [id, m] of after) {
    const old = before.get(id);
    if (!old) {
      messagesAdded++;
      pointsAdded += m.timeseries.length;
      devices.add(m.p_uid);
      continue;
    }
    if (content(old) === content(m)) {
      continue;
    }
    devices.add(m.p_uid);
    const o = pointsOf(old);
    const n = pointsOf(m);
    for (const [key, value] of n) {
      const was = o.get(key);
      if (was === undefined) {
        pointsAdded++;
      } else if (was !== value) {
        valuesChanged++;
      }
    }
    for (const key of o.keys()) {
      if (!n.has(key)) {
        pointsRemoved++;
      }
    }
  }
  for (const [id, m] of before) {
    if (!after.has(id)) {
      messagesRemoved++;
      pointsRemoved += m.timeseries.length;
      devices.add(m.p_uid);
    }
  }
  // Two stored rows for one message (an earlier decode stored beside another) is a change too:
  // the replay leaves one.
  const duplicates = stored.length !== before.size;
  return {
    changed: devices.size > 0 || duplicates,
    messagesAdded,
    messagesRemoved,
    valuesChanged,
    pointsAdded,
    pointsRemoved,
    devices: [...devices].sort((a, b) => a - b),
  };
}

/** Totals over many raw messages, as `--dry-run` and a replay's summary print them. */
export interface ReplayTotals extends Omit<RawDiff, "changed"> {
  /** Raw messages looked at. */
  readonly raw: number;
  /** Of those, raw messages whose stored messages change. */
  readonly changed: number;
  readonly unchanged: number;
  /** Raw messages that could not be normalised now (left as they are; see `failures`). */
  readonly failed: number;
  /** Failures by reason. */
  readonly failures: Readonly<Record<string, number>>;
}

/** Sums raw messages' outcomes (a device set, so a million messages cost a million adds). */
export class TotalsAccumulator {
  #t = {
    raw: 0,
    changed: 0,
    unchanged: 0,
    failed: 0,
    messagesAdded: 0,
    messagesRemoved: 0,
    valuesChanged: 0,
    pointsAdded: 0,
    pointsRemoved: 0,
  };
  readonly #devices = new Set<number>();
  readonly #failures: Record<string, number> = {};

  /** Adds one raw message's outcome: its diff, or the reason it could not be replayed. */
  add(outcome: RawDiff | { readonly failed: string }): void {
    const t = this.#t;
    t.raw++;
    if ("failed" in outcome) {
      t.failed++;
      this.#failures[outcome.failed] = (this.#failures[outcome.failed] ?? 0) + 1;
      return;
    }
    if (outcome.changed) {
      t.changed++;
    } else {
      t.unchanged++;
    }
    t.messagesAdded += outcome.messagesAdded;
    t.messagesRemoved += outcome.messagesRemoved;
    t.valuesChanged += outcome.valuesChanged;
    t.pointsAdded += outcome.pointsAdded;
    t.pointsRemoved += outcome.pointsRemoved;
    for (const d of outcome.devices) {
      this.#devices.add(d);
    }
  }

  totals(): ReplayTotals {
    return {
      ...this.#t,
      devices: [...this.#devices].sort((a, b) => a - b),
      failures: { ...this.#failures },
    };
  }
}
