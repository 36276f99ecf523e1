import type { DeadLetter } from "./dead-letter.js";

/** Which dead letters an operation takes. */
export type Selection =
  | { readonly kind: "all" }
  /** Every dead letter whose broker_correlation_id is one of these. */
  | { readonly kind: "cids"; readonly cids: readonly string[] }
  | { readonly kind: "reason"; readonly reason: string };

export function selects(selection: Selection, letter: DeadLetter): boolean {
  switch (selection.kind) {
    case "all":
      return true;
    case "reason":
      return letter.reason === selection.reason;
    case "cids":
      return letter.correlationId !== undefined && selection.cids.includes(letter.correlationId);
  }
}

/** A selection from the three mutually exclusive options; a message when not exactly one. */
export function selectionFrom(options: {
  all?: boolean;
  cids?: readonly string[];
  reason?: string;
}): Selection | string {
  const given = [
    options.all === true,
    options.cids !== undefined && options.cids.length > 0,
    options.reason !== undefined,
  ].filter(Boolean).length;
  if (given !== 1) {
    return "give exactly one of --cid, --reason or --all";
  }
  if (options.all === true) {
    return { kind: "all" };
  }
  if (options.reason !== undefined) {
    return { kind: "reason", reason: options.reason };
  }
  return { kind: "cids", cids: [...new Set(options.cids)] };
}
