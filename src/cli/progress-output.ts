import { ProgressReporter } from "../dlq/progress.js";

/**
 * Progress of a long command on stderr (stdout keeps the command's result): rewritten in place on
 * a terminal, one line at a time otherwise. Returns `update(label, done, total)`.
 */
export function stderrProgress(): (label: string, done: number, total: number) => void {
  const tty = process.stderr.isTTY === true;
  const reporter = new ProgressReporter({
    write: (line, final) =>
      process.stderr.write(tty ? `\r\u001b[K${line}${final ? "\n" : ""}` : `${line}\n`),
  });
  return (label, done, total) => reporter.update(label, done, total);
}

/** An AbortSignal that fires on SIGINT/SIGTERM while `fn` runs: long commands stop between batches. */
export async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await fn(stop.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
