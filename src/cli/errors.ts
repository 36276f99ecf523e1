/**
 * The two ways a command fails on purpose, each reported in one line by main.ts. Anything else
 * thrown (a database that is down, a conflict) is a failure too: exit 1, one line.
 */

/** A mistake in how the command was called (options, arguments): exit 2, as argparse. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Input the command understood but refuses (an invalid device, an empty password): exit 1. */
export class InputError extends Error {
  override readonly name = "InputError";
}

/** What to print for a failed command: one line, no stack trace. */
export function describeError(err: unknown): string {
  let message: string;
  if (err instanceof AggregateError && !err.message && err.errors.length > 0) {
    // pg reports an unreachable server as an AggregateError with an empty message.
    message = describeError(err.errors[0]);
  } else if (err instanceof Error) {
    message = err.message || err.name;
  } else {
    message = String(err);
  }
  return message.replace(/\s*\n\s*/g, " ").trim();
}
