/**
 * The chaos run's accounting, apart from any I/O: what was accepted, by correlation id, against
 * what each destination holds. Unit-tested in test/unit/chaos-reconcile.test.ts.
 */

/** One input a sender got accepted (2xx, PUBACK): the run owes it at every destination. */
export interface AcceptedInput {
  readonly correlationId: string;
  /** The device it is about, for per-device order. */
  readonly device: string;
  /** Its place in its device's sending order (0, 1, 2 … per device). */
  readonly seq: number;
}

/** What one destination holds, in the order it received it (repeats kept). */
export interface DestinationContents {
  readonly name: string;
  readonly correlationIds: readonly string[];
}

export interface DestinationReport {
  readonly name: string;
  /** Accepted and not there. */
  readonly lost: string[];
  /** There more than once. */
  readonly duplicated: string[];
  /** There and never sent as far as the run knows (not even as an unaccepted attempt). */
  readonly unexpected: string[];
  /** Devices at least one of whose inputs arrived after an input sent later. */
  readonly devicesOutOfOrder: number;
  /** Pairs of consecutive arrivals (per device) in the opposite order to their sending. */
  readonly inversions: number;
}

/**
 * Every accepted input exactly once at `destination`; `tolerated` ids (sent but never accepted,
 * which the router may still have stored before it failed to answer) may appear without counting
 * as unexpected, but not twice.
 */
export function reconcileDestination(
  accepted: readonly AcceptedInput[],
  destination: DestinationContents,
  tolerated: ReadonlySet<string> = new Set(),
): DestinationReport {
  const counts = new Map<string, number>();
  for (const id of destination.correlationIds) {
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const byId = new Map(accepted.map((a) => [a.correlationId, a]));
  const lost = accepted.filter((a) => !counts.has(a.correlationId)).map((a) => a.correlationId);
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const unexpected = [...counts.keys()].filter((id) => !byId.has(id) && !tolerated.has(id));

  const lastSeq = new Map<string, number>();
  const disordered = new Set<string>();
  let inversions = 0;
  const seen = new Set<string>();
  for (const id of destination.correlationIds) {
    const input = byId.get(id);
    if (!input || seen.has(id)) {
      continue;
    }
    seen.add(id);
    const previous = lastSeq.get(input.device);
    if (previous !== undefined && input.seq < previous) {
      inversions++;
      disordered.add(input.device);
    }
    lastSeq.set(input.device, Math.max(previous ?? -1, input.seq));
  }
  return {
    name: destination.name,
    lost,
    duplicated,
    unexpected,
    devicesOutOfOrder: disordered.size,
    inversions,
  };
}

/** A fault's window and the deliveries that tell when the system had recovered from it. */
export interface FaultWindow {
  readonly name: string;
  /** ms since the run's start. */
  readonly startedAt: number;
  readonly endedAt: number;
}

/**
 * Recovery after each fault: from its end until the first input accepted after that end reached
 * the final destination (ms); undefined when none did. `acceptedAt` and `arrivedAt` are in ms since
 * the run's start, by correlation id.
 */
export function recoveryTimes(
  faults: readonly FaultWindow[],
  acceptedAt: ReadonlyMap<string, number>,
  arrivedAt: ReadonlyMap<string, number>,
): { name: string; recoveryMs: number | undefined }[] {
  return faults.map((f) => {
    let first: number | undefined;
    for (const [id, at] of acceptedAt) {
      const arrived = arrivedAt.get(id);
      // Arrived after the end too: an input stored before a crash and only answered 2xx on a
      // retry after it has its acceptance late but its arrival early.
      if (
        at >= f.endedAt &&
        arrived !== undefined &&
        arrived >= f.endedAt &&
        (first === undefined || arrived < first)
      ) {
        first = arrived;
      }
    }
    return { name: f.name, recoveryMs: first === undefined ? undefined : first - f.endedAt };
  });
}

/** True when no destination lost, duplicated or invented anything. */
export function allAccountedFor(reports: readonly DestinationReport[]): boolean {
  return reports.every(
    (r) => r.lost.length === 0 && r.duplicated.length === 0 && r.unexpected.length === 0,
  );
}

/** One line per failing destination, naming the ids (at most `limit` of each kind). */
export function describeFailures(reports: readonly DestinationReport[], limit = 50): string[] {
  const lines: string[] = [];
  const part = (kind: string, ids: string[]): string =>
    ids.length === 0
      ? ""
      : ` ${kind} ${ids.length}: ${ids.slice(0, limit).join(" ")}${ids.length > limit ? " …" : ""};`;
  for (const r of reports) {
    const text =
      part("lost", r.lost) + part("duplicated", r.duplicated) + part("unexpected", r.unexpected);
    if (text !== "") {
      lines.push(`${r.name}:${text}`);
    }
  }
  return lines;
}

/** One dot a Ubidots stand-in stored, as the run reconciles it. */
export interface ReceivedDot {
  readonly label: string;
  readonly variable: string;
  readonly timestamp: number;
  readonly value: number;
  readonly correlationId: string | undefined;
}

/**
 * What a Ubidots stand-in received, by message: the correlation id once per message (a message
 * sends one dot per variable), again for each of its variables received once more with another
 * value or timestamp (a duplicate), and not for a dot received again verbatim, which Ubidots
 * stores as the same dot (one value per variable and timestamp): those are counted as rewrites.
 */
export function dotsByMessage(dots: readonly ReceivedDot[]): {
  correlationIds: string[];
  rewrites: number;
} {
  const verbatim = new Set<string>();
  const variables = new Set<string>();
  const messages = new Set<string>();
  const correlationIds: string[] = [];
  let rewrites = 0;
  for (const d of dots) {
    const id = d.correlationId ?? `dot without a correlation id on ${d.label}/${d.variable}`;
    const key = JSON.stringify([d.label, d.variable, d.timestamp, d.value, id]);
    if (verbatim.has(key)) {
      rewrites++;
      continue;
    }
    verbatim.add(key);
    const variable = JSON.stringify([id, d.variable]);
    if (!messages.has(id) || variables.has(variable)) {
      correlationIds.push(id);
    }
    messages.add(id);
    variables.add(variable);
  }
  return { correlationIds, rewrites };
}
