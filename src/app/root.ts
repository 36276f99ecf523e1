import { hostname } from "node:os";

import express from "express";

import { AmqpConnection } from "../bus/connection.js";
import {
  declareConsumerQueue,
  declareExchanges,
  QUEUE_NAMES,
  topologyOptions,
} from "../bus/topology.js";
import type { Config } from "../core/config.js";
import { Lifecycle } from "../core/lifecycle.js";
import type { Logger } from "../core/logger.js";
import { Metrics } from "../core/metrics.js";
import { createDatabase } from "../db/database.js";
import type { Component, Dependencies } from "../runtime/component.js";
import { closeServer, listen, portOf } from "../runtime/http.js";
import { createOpsRouter } from "../runtime/ops.js";
import { COMPONENT_FACTORIES, resolveComponentNames } from "./registry.js";

/** A running `broker run …` process. */
export interface RunningSystem {
  readonly deps: Dependencies;
  readonly components: readonly Component[];
  /** Port of the /metrics /healthz /readyz server (METRICS_PORT; 0 picks a free one). */
  readonly opsPort: number;
  /** Graceful stop: components first (stop taking work, finish in-flight), then connections. */
  stop(): Promise<void>;
}

/**
 * The composition root shared by `broker run` and the tests: builds the database, the AMQP
 * connection and the metrics registry once, declares the topology, and starts the components.
 * Every resource registers its teardown as it is created.
 */
export async function startSystem(
  names: readonly string[],
  config: Config,
  logger: Logger,
  options: {
    metrics?: Metrics;
    /**
     * The AMQP connection's name as RabbitMQ shows it, and the pool's `application_name` in
     * pg_stat_activity. Default `broker <components> host:pid`.
     */
    connectionName?: string;
    /**
     * How long each teardown step of `stop()` may take before it is abandoned, ms. Default
     * 5 000; the tests give more, since a machine running many suites at once stretches every
     * step without anything being wrong.
     */
    stopStepTimeoutMs?: number;
  } = {},
): Promise<RunningSystem> {
  const componentNames = resolveComponentNames(names);
  const lifecycle = new Lifecycle(logger);
  try {
    const metrics = options.metrics ?? new Metrics();
    // The same name in pg_stat_activity and in RabbitMQ's connection list.
    const name =
      options.connectionName ?? `broker ${componentNames.join(",")} ${hostname()}:${process.pid}`;
    const database = createDatabase(config.pg, logger.child({ component: "postgres" }), {
      applicationName: name,
    });
    lifecycle.defer("postgres", () => database.close());
    const amqp = new AmqpConnection({
      url: config.amqp.url,
      name,
      logger: logger.child({ component: "rabbitmq" }),
    });
    amqp.on("connected", () => {
      void declareBaseTopology(amqp, config).catch((err: unknown) =>
        logger.warn({ err }, "cannot declare the RabbitMQ topology yet"),
      );
    });
    amqp.start();
    lifecycle.defer("rabbitmq", () => amqp.close());
    const deps: Dependencies = {
      config,
      logger,
      metrics,
      database,
      amqp,
      isHealthy: async () => amqp.isConnected && (await database.ping()),
    };

    const components = componentNames.map((name) => COMPONENT_FACTORIES[name](deps));
    const ops = express();
    ops.disable("x-powered-by");
    ops.use(createOpsRouter(deps, components));
    const server = await listen(ops, config.metricsPort);
    lifecycle.defer("ops http", () => closeServer(server));

    for (const component of components) {
      await component.start();
      lifecycle.defer(component.name, () => component.stop());
      logger.info({ component: component.name }, "component started");
    }
    return {
      deps,
      components,
      opsPort: portOf(server),
      stop: () => lifecycle.close(options.stopStepTimeoutMs),
    };
  } catch (err) {
    await lifecycle.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Exchanges, plus the mapper's queue on the physical exchange: every physical message must reach
 * the mapper, so the queue exists before any front-end publishes (their publishes are mandatory).
 */
async function declareBaseTopology(amqp: AmqpConnection, config: Config): Promise<void> {
  const channel = await amqp.createChannel();
  try {
    await declareExchanges(channel, config.amqp);
    await declareConsumerQueue(
      channel,
      { name: config.amqp.queuePrefix + QUEUE_NAMES.mapper, exchange: config.amqp.ptsExchange },
      topologyOptions(config.amqp),
    );
  } finally {
    await channel.close().catch(() => undefined);
  }
}
