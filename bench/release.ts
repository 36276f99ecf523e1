/**
 * The release benchmark: BENCH_HELD (default 100000) held messages spread over BENCH_HELD_DEVICES
 * (default 100) physical devices, stored as the mapper holds them, then a mapping that covers
 * them all, then `releaseHeld` for every device, four devices at a time, as `broker map release`
 * runs it (claim, confirmed publish with headers, mark; each round under the device's lock).
 * Timed until every released message has arrived on the logical exchange; latency is from the
 * start of the release to receipt.
 */
import type amqp from "amqplib";
import type pg from "pg";

import { AmqpConnection } from "../src/bus/connection.js";
import { ConfirmedPublisher } from "../src/bus/publisher.js";
import { createLogger } from "../src/core/logger.js";
import { createDatabase } from "../src/db/database.js";
import { releaseHeld } from "../src/mapper/release.js";
import { consumeCounting } from "./harness.js";
import { figures, type Figures } from "./stats.js";

const HELD = Number(process.env.BENCH_HELD ?? 100_000);
const HELD_DEVICES = Number(process.env.BENCH_HELD_DEVICES ?? 100);
const PARALLEL = 4;

async function storeHeld(pool: pg.Pool): Promise<number[]> {
  const { rows } = await pool.query<{ uid: number }>(
    `insert into physical_devices (source_name, name, source_ids)
     select 'ydoc', 'held ' || g, jsonb_build_object('serial', 'held-' || g)
     from generate_series(1, $1) g returning uid`,
    [HELD_DEVICES],
  );
  const uids = rows.map((r) => r.uid);
  // Held with reason no_mapping, stamped a minute apart per device, in one statement.
  await pool.query(
    `insert into physical_timeseries (physical_uid, ts, json_msg, msg_key, hold_reason)
     select d.uid, t.ts,
            jsonb_build_object('broker_correlation_id', gen_random_uuid(), 'p_uid', d.uid,
              'timestamp', to_char(t.ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              'timeseries', jsonb_build_array(jsonb_build_object('name', 'temperature', 'value', 21.5))),
            gen_random_uuid(), 'no_mapping'
     from unnest($1::int[]) d(uid)
     cross join lateral (select timestamptz '2024-01-01T00:00:00Z' + g * interval '1 minute' as ts
                         from generate_series(1, $2) g) t`,
    [uids, Math.ceil(HELD / HELD_DEVICES)],
  );
  await pool.query(
    "insert into logical_devices (name) select 'held ' || uid from unnest($1::int[]) uid",
    [uids],
  );
  await pool.query(
    `insert into physical_logical_map (physical_uid, logical_uid, start_time)
     select p.uid, l.uid, '2000-01-01T00:00:00Z' from unnest($1::int[]) p(uid)
     join logical_devices l on l.name = 'held ' || p.uid`,
    [uids],
  );
  return uids;
}

export async function releaseRun(
  conn: amqp.ChannelModel,
  pool: pg.Pool,
  env: Record<string, string>,
  captureQueue: string,
): Promise<Figures> {
  const uids = await storeHeld(pool);
  const total = uids.length * Math.ceil(HELD / HELD_DEVICES);
  const ch = await conn.createChannel();
  await ch.assertQueue(captureQueue, { durable: true, arguments: { "x-queue-type": "quorum" } });
  await ch.bindQueue(captureQueue, env.LTS_EXCHANGE!, "");
  const logger = createLogger({ level: "warn" });
  const database = createDatabase(
    {
      host: env.PGHOST!,
      port: Number(env.PGPORT),
      user: env.PGUSER!,
      password: env.PGPASSWORD!,
      database: env.PGDATABASE!,
      poolSize: PARALLEL + 2,
    },
    logger,
  );
  const amqpConnection = new AmqpConnection({ url: env.AMQP_URL!, name: "bench release", logger });
  amqpConnection.start();
  const publisher = new ConfirmedPublisher({
    connection: amqpConnection,
    exchange: env.LTS_EXCHANGE!,
    logger,
  });
  const latencies: number[] = [];
  let started = 0;
  const stop = await consumeCounting(conn, captureQueue, (_body, at) =>
    latencies.push(at - started),
  );
  try {
    await amqpConnection.waitUntilConnected();
    started = Date.now();
    const queue = [...uids];
    const worker = async (): Promise<void> => {
      for (let puid = queue.shift(); puid !== undefined; puid = queue.shift()) {
        await releaseHeld(database.db, publisher, { puid });
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    while (latencies.length < total) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (Date.now() - started) / 1000;
    return figures(
      `Release of held messages (${HELD_DEVICES} devices, ${PARALLEL} at once)`,
      latencies,
      seconds,
    );
  } finally {
    await stop();
    await ch.deleteQueue(captureQueue);
    await ch.close();
    await publisher.close();
    await amqpConnection.close();
    await database.close();
  }
}
