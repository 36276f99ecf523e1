import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * The process's Prometheus registry and the message counters every component reports into, each
 * labelled by component. One registry per process, created by the composition root.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly messagesIn: Counter<"component">;
  readonly messagesOut: Counter<"component">;
  readonly deadLettered: Counter<"component" | "reason">;
  readonly retried: Counter<"component">;
  readonly shed: Counter<"component">;
  readonly processingSeconds: Histogram<"component">;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
    }
    const registers = [this.registry];
    this.messagesIn = new Counter({
      name: "broker_messages_in_total",
      help: "Messages received by a component",
      labelNames: ["component"],
      registers,
    });
    this.messagesOut = new Counter({
      name: "broker_messages_out_total",
      help: "Messages a component completed (published, stored or delivered)",
      labelNames: ["component"],
      registers,
    });
    this.deadLettered = new Counter({
      name: "broker_messages_dead_lettered_total",
      help: "Messages set aside with a reason instead of being processed",
      labelNames: ["component", "reason"],
      registers,
    });
    this.retried = new Counter({
      name: "broker_messages_retried_total",
      help: "Messages whose processing failed transiently and was retried",
      labelNames: ["component"],
      registers,
    });
    // Apart from `retried`, which means a server or destination is unreachable: shedding means
    // this process has more work than it can do, and asks for another remedy.
    this.shed = new Counter({
      name: "broker_messages_shed_total",
      help: "Requests refused unread because too many were waiting (the sender retries)",
      labelNames: ["component"],
      registers,
    });
    this.processingSeconds = new Histogram({
      name: "broker_processing_seconds",
      help: "Time from receipt to completion of one message (or batch member)",
      labelNames: ["component"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  }
}
