import { z } from "zod";

import { parseInstant } from "../core/time.js";
import type { RawSelection } from "../db/repositories/replay-runs.js";

/**
 * Which raw messages a replay takes, pure. Every criterion given must hold (an empty selection is
 * refused: a replay of everything is asked for with `all`). Time bounds apply to
 * raw_messages.ts (the message's own time, else its arrival), `[from, to)`.
 */
export interface ReplaySelection extends RawSelection {
  /** True: no criterion, every raw message of the sources a replay can take. */
  readonly all?: boolean;
}

const instant = z
  .string()
  .refine((v) => parseInstant(v) !== undefined, "must be an ISO-8601 date-time with an offset");

const schema = z
  .strictObject({
    sources: z.array(z.string().min(1)).min(1).optional(),
    puids: z.array(z.number().int().positive()).min(1).optional(),
    apps: z.array(z.string().min(1)).min(1).optional(),
    correlationIds: z.array(z.uuid("must be a UUID")).min(1).optional(),
    from: instant.optional(),
    to: instant.optional(),
    all: z.boolean().optional(),
  })
  .refine(
    (s) => s.from === undefined || s.to === undefined || Date.parse(s.from) < Date.parse(s.to),
    {
      message: "from must be before to",
      path: ["to"],
    },
  );

/** Thrown for a selection that cannot be run; the message is one line for the operator. */
export class SelectionError extends Error {}

const CRITERIA = ["sources", "puids", "apps", "correlationIds", "from", "to"] as const;

/**
 * Validates a selection and returns it in canonical form (lists sorted and without repeats,
 * instants as given): two requests for the same messages give equal values, which is how an
 * interrupted replay is recognised and resumed.
 */
export function parseSelection(input: unknown): ReplaySelection {
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join(".") || "(selection)"}: ${i.message}`)
      .join("; ");
    throw new SelectionError(`invalid replay selection: ${problems}`);
  }
  const s = parsed.data;
  const given = CRITERIA.filter((k) => s[k] !== undefined);
  if (given.length === 0 && s.all !== true) {
    throw new SelectionError(
      "select what to replay (source, device, application, time range or correlation ids), or ask for all",
    );
  }
  if (given.length > 0 && s.all === true) {
    throw new SelectionError("all replays everything: give it without other criteria");
  }
  const sorted = <T extends string | number>(v: readonly T[] | undefined): T[] | undefined =>
    v === undefined ? undefined : [...new Set(v)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: Record<string, unknown> = {};
  const lists = {
    sources: sorted(s.sources),
    puids: sorted(s.puids),
    apps: sorted(s.apps),
    correlationIds: sorted(s.correlationIds?.map((c) => c.toLowerCase())),
  };
  for (const [k, v] of Object.entries(lists)) {
    if (v !== undefined) {
      out[k] = v;
    }
  }
  if (s.from !== undefined) {
    out.from = s.from;
  }
  if (s.to !== undefined) {
    out.to = s.to;
  }
  if (s.all === true) {
    out.all = true;
  }
  return out as ReplaySelection;
}

/** One line naming a selection, for progress output and summaries. */
export function describeSelection(s: ReplaySelection): string {
  if (s.all === true) {
    return "all raw messages";
  }
  const parts: string[] = [];
  if (s.sources) {
    parts.push(`source ${s.sources.join(",")}`);
  }
  if (s.apps) {
    parts.push(`application ${s.apps.join(",")}`);
  }
  if (s.puids) {
    parts.push(`physical device ${s.puids.join(",")}`);
  }
  if (s.correlationIds) {
    parts.push(`${s.correlationIds.length} correlation id(s)`);
  }
  if (s.from) {
    parts.push(`from ${s.from}`);
  }
  if (s.to) {
    parts.push(`to ${s.to}`);
  }
  return parts.join(", ");
}
