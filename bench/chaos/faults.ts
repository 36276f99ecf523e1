import { rename, rm, writeFile } from "node:fs/promises";

import type pg from "pg";

import { sleep } from "../../src/core/backoff.js";
import type {
  PrivateMosquitto,
  PrivatePostgres,
  PrivateRabbit,
} from "../../test/helpers/private-servers.js";
import type { UbidotsStandIn } from "../../test/helpers/ubidots-standin.js";
import type { AxisTechStandIn } from "./axistech-standin.js";
import type { InfluxStandIn } from "./influx-standin.js";
import type { ComponentProcess } from "./processes.js";

/**
 * The faults of a chaos run. Each one starts, lasts (`holdMs` for those that last "a while"), and
 * ends; the run spaces them out over the load and measures recovery from each end.
 */
export interface Fault {
  readonly name: string;
  /** Does the damage and, for a lasting fault, repairs it; resolves at the repair. */
  run(holdMs: number): Promise<void>;
}

export interface FaultTargets {
  readonly processes: readonly ComponentProcess[];
  readonly rabbit: PrivateRabbit;
  readonly postgres: PrivatePostgres;
  /** A pool on the run's database, for the locks of the slow-database fault. */
  readonly pool: pg.Pool;
  readonly mosquitto: PrivateMosquitto;
  readonly influx: InfluxStandIn;
  readonly ubidots: UbidotsStandIn;
  readonly vendor: AxisTechStandIn;
  readonly frredDir: string;
}

/** kill -9 of a process, then a fresh start a moment later (as a supervisor would). */
function killAndRestart(p: ComponentProcess): Fault {
  return {
    name: `kill -9 ${p.label}`,
    async run() {
      await p.kill();
      await sleep(1_000);
      p.start();
    },
  };
}

export function allFaults(t: FaultTargets): Fault[] {
  return [
    ...t.processes.filter((p) => !p.label.endsWith("-b")).map(killAndRestart),
    {
      // SIGTERM and start: Mosquitto keeps sessions and queued QoS 1 messages in its persistence
      // file across a restart (a kill -9 would lose what it took since its last save, which is
      // the broker's own durability, not the router's).
      name: "MQTT broker restarted",
      async run() {
        await t.mosquitto.restart();
      },
    },
    {
      name: "RabbitMQ connections closed",
      async run() {
        await t.rabbit.ctl("-q", "close_all_connections", "closed by the chaos run");
      },
    },
    {
      name: "destinations (InfluxDB, Ubidots) down",
      async run(holdMs) {
        t.influx.setDown();
        t.ubidots.down = true;
        await sleep(holdMs);
        t.influx.setUp();
        t.ubidots.down = false;
      },
    },
    {
      name: "vendor (AxisTech) answering 503",
      async run(holdMs) {
        t.vendor.down = true;
        await sleep(holdMs);
        t.vendor.down = false;
      },
    },
    {
      // As root a read-only mode changes nothing: the directory itself goes away and a plain
      // file takes its place, so every write fails until it is back.
      name: "FRRED directory unusable",
      async run(holdMs) {
        const away = `${t.frredDir}.away`;
        await rename(t.frredDir, away);
        await writeFile(t.frredDir, "not a directory\n");
        await sleep(holdMs);
        await rm(t.frredDir);
        await rename(away, t.frredDir);
      },
    },
    {
      // Writers of both stores wait behind the lock: the webhook's raw insert, the mapper's batch.
      name: "slow database (locks held)",
      async run(holdMs) {
        const client = await t.pool.connect();
        try {
          await client.query("begin");
          await client.query(
            "lock table physical_timeseries, raw_messages in share row exclusive mode",
          );
          await sleep(holdMs);
          await client.query("commit");
        } finally {
          client.release();
        }
      },
    },
    {
      name: "PostgreSQL restarted",
      async run() {
        await t.postgres.restart();
      },
    },
    {
      name: "RabbitMQ restarted",
      async run() {
        await t.rabbit.restart();
      },
    },
  ];
}
