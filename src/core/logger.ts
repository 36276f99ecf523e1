import { pino } from "pino";

import { formatLogLine } from "./log-format.js";

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** pino level. Default `info`. */
  level?: string;
  /** Where lines go. Default standard output. */
  destination?: pino.DestinationStream;
  /**
   * Readable lines instead of JSON (for a person at a terminal; see log-format.ts). Default
   * false: JSON lines, for log collectors.
   */
  pretty?: boolean;
  /** ANSI colours in readable lines. Default: standard output is a TTY and NO_COLOR is unset. */
  color?: boolean;
}

/**
 * The process's root logger: JSON lines (or readable ones with `pretty`), secrets redacted.
 * Components take `logger.child({ component })`; message-related lines add
 * `broker_correlation_id`.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const out = options.destination ?? process.stdout;
  const color =
    options.color ?? (process.stdout.isTTY === true && process.env.NO_COLOR === undefined);
  const destination: pino.DestinationStream | undefined = options.pretty
    ? { write: (line: string) => void out.write(formatLogLine(line, { color })) }
    : options.destination;
  return pino(
    {
      level: options.level ?? "info",
      base: { pid: process.pid },
      redact: {
        paths: [
          "password",
          "*.password",
          "token",
          "*.token",
          "authorization",
          "*.authorization",
          "headers.authorization",
          "req.headers.authorization",
          "config.amqpUrl",
          "config.pg.password",
        ],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
