import type { DropNote } from "./mqtt-source.js";

/**
 * `; 3 left out (unknown_channel, not_numeric)`, or "" without notes: what a `no_readings`
 * rejection adds so the dead letter says why nothing was left.
 */
export function leftOut(notes: readonly DropNote[]): string {
  if (notes.length === 0) {
    return "";
  }
  return `; ${notes.length} left out (${[...new Set(notes.map((n) => n.reason))].join(", ")})`;
}
