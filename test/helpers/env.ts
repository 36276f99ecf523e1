/** Connection settings for the real services the integration tests use (overridable by env). */
export const PG = {
  host: process.env.PGHOST ?? "127.0.0.1",
  port: Number(process.env.PGPORT ?? 5432),
  user: process.env.PGUSER ?? "postgres",
  password: process.env.PGPASSWORD ?? "",
};

export const AMQP_URL =
  process.env.AMQP_URL ??
  `amqp://${encodeURIComponent(process.env.RABBITMQ_DEFAULT_USER ?? "guest")}:${encodeURIComponent(
    process.env.RABBITMQ_DEFAULT_PASS ?? "guest",
  )}@${process.env.RABBITMQ_HOST ?? "127.0.0.1"}:${process.env.RABBITMQ_PORT ?? 5672}/%2F`;
