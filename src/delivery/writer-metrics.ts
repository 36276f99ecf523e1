import { Counter, Gauge, Histogram, type Registry } from "prom-client";

import type { Metrics } from "../core/metrics.js";

/** Per-writer Prometheus metrics, all labelled by `component` (the writer's name). */
export interface WriterMetrics {
  /** Messages the destination took. */
  readonly delivered: Counter<"component">;
  /** Messages put back to wait for another attempt. */
  readonly retried: Counter<"component">;
  /** Requests sent to the destination, by HTTP status or error kind. */
  readonly requests: Counter<"component" | "status">;
  /** Time one destination request took, in seconds. */
  readonly latency: Histogram<"component">;
  /** Age of the oldest undelivered message, in seconds. */
  readonly lag: Gauge<"component">;
  /** 1 while the destination refuses the credentials or account and the writer is not sending. */
  readonly suspended: Gauge<"component">;
  /** Values a destination cannot take (e.g. not numeric), by reason. */
  readonly valuesSkipped: Counter<"component" | "reason">;
}

/** Returns the metric of that name if a writer in this process made it already. */
function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** The writer metrics of the process's registry (created by the first writer that asks). */
export function writerMetrics(metrics: Metrics): WriterMetrics {
  const registers = [metrics.registry];
  const r = metrics.registry;
  return {
    delivered: once(
      r,
      "broker_writer_delivered_total",
      () =>
        new Counter({
          name: "broker_writer_delivered_total",
          help: "Messages a writer delivered to its destination",
          labelNames: ["component"],
          registers,
        }),
    ),
    retried: once(
      r,
      "broker_writer_retried_total",
      () =>
        new Counter({
          name: "broker_writer_retried_total",
          help: "Messages a writer put back to try again later",
          labelNames: ["component"],
          registers,
        }),
    ),
    requests: once(
      r,
      "broker_writer_requests_total",
      () =>
        new Counter({
          name: "broker_writer_requests_total",
          help: "Requests a writer sent to its destination, by status (HTTP code or error kind)",
          labelNames: ["component", "status"],
          registers,
        }),
    ),
    latency: once(
      r,
      "broker_writer_request_seconds",
      () =>
        new Histogram({
          name: "broker_writer_request_seconds",
          help: "Time a destination took to answer one request",
          labelNames: ["component"],
          buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
          registers,
        }),
    ),
    lag: once(
      r,
      "broker_writer_lag_seconds",
      () =>
        new Gauge({
          name: "broker_writer_lag_seconds",
          help: "Age of the oldest message a writer has not delivered yet",
          labelNames: ["component"],
          registers,
        }),
    ),
    suspended: once(
      r,
      "broker_writer_suspended",
      () =>
        new Gauge({
          name: "broker_writer_suspended",
          help: "1 while the destination refuses the writer's credentials or account",
          labelNames: ["component"],
          registers,
        }),
    ),
    valuesSkipped: once(
      r,
      "broker_writer_values_skipped_total",
      () =>
        new Counter({
          name: "broker_writer_values_skipped_total",
          help: "Values a writer could not send (e.g. not numeric), by reason",
          labelNames: ["component", "reason"],
          registers,
        }),
    ),
  };
}
