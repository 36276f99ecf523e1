import { pino } from "pino";

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** pino level. Default `info`. */
  level?: string;
  /** Where lines go. Default standard output. */
  destination?: pino.DestinationStream;
}

/**
 * The process's root logger: JSON lines, secrets redacted. Components take
 * `logger.child({ component })`; message-related lines add `broker_correlation_id`.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
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
    options.destination,
  );
}
