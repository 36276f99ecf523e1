/**
 * The replay benchmark: BENCH_REPLAY (default 1000000) raw TTN uplinks over BENCH_REPLAY_DEVICES
 * (default 1000) mapped devices, generated from the bench's Netvox uplink, stored as the webhook
 * stores them, each with the row a buggy first decode left in physical_timeseries. Then one
 * replay of the application, as `broker replay --app` runs it: every uplink re-decoded by the
 * bench decoder in the decoder pool, its row replaced, routed and published (confirmed) to the
 * logical exchange. Timed until every replayed message has arrived on the logical exchange;
 * latency is from the start of the replay to receipt. BENCH_REPLAY=0 leaves it out.
 */
import { randomUUID } from "node:crypto";
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import type amqp from "amqplib";
import type pg from "pg";

import { AmqpConnection } from "../src/bus/connection.js";
import { ConfirmedPublisher } from "../src/bus/publisher.js";
import { loadConfig } from "../src/core/config.js";
import { createLogger } from "../src/core/logger.js";
import { createDatabase } from "../src/db/database.js";
import { replay } from "../src/replay/replay.js";
import { parseSelection } from "../src/replay/selection.js";
import { openRawNormaliser } from "../src/sources/replay.js";
import { BENCH_FRM_PAYLOAD } from "./decoders.js";
import { consumeCounting } from "./harness.js";
import { figures, type Figures } from "./stats.js";

export const REPLAY_MESSAGES = Number(process.env.BENCH_REPLAY ?? 1_000_000);
const DEVICES = Number(process.env.BENCH_REPLAY_DEVICES ?? 1_000);
const BATCH = Number(process.env.BENCH_REPLAY_BATCH ?? 1_000);
const APP = "bench-replay";
/** Rows generated per statement (bounded memory in PostgreSQL and here). */
const CHUNK = 100_000;

const DECODER = fileURLToPath(
  new URL("../test/fixtures/ttn-decoders/uplink/temphumid-netvox-r718a.js", import.meta.url),
);

async function storeRaw(pool: pg.Pool): Promise<void> {
  const eui = (n: string) => `lpad(to_hex(${n}), 16, '7')`;
  await pool.query(
    `insert into physical_devices (source_name, name, source_ids)
     select 'ttn', 'replay ' || g,
            jsonb_build_object('app_id', $2::text, 'dev_id', 'replay-' || ${eui("g")},
                               'dev_eui', ${eui("g")})
     from generate_series(1, $1) g`,
    [DEVICES, APP],
  );
  await pool.query(
    "insert into logical_devices (name) select 'replay ' || g from generate_series(1, $1) g",
    [DEVICES],
  );
  await pool.query(
    `insert into physical_logical_map (physical_uid, logical_uid, start_time)
     select p.uid, l.uid, '2000-01-01T00:00:00Z' from physical_devices p
     join logical_devices l on l.name = p.name where p.name like 'replay %'`,
  );
  for (let first = 0; first < REPLAY_MESSAGES; first += CHUNK) {
    const last = Math.min(REPLAY_MESSAGES, first + CHUNK) - 1;
    // One uplink per second from 2024-01-01, devices in turn; the first decode's row beside it.
    await pool.query(
      `with u as (
         select gen_random_uuid() as cid, i, 1 + i % $3 as g,
                timestamptz '2024-01-01T00:00:00Z' + i * interval '1 second' as ts
         from generate_series($1::int, $2::int) i
       ), raw as (
         insert into raw_messages (source_name, correlation_id, ts, json_msg, physical_uid)
         select 'ttn', u.cid, u.ts,
                jsonb_build_object(
                  'end_device_ids', jsonb_build_object(
                    'device_id', 'replay-' || ${eui("u.g")},
                    'application_ids', jsonb_build_object('application_id', $4::text),
                    'dev_eui', ${eui("u.g")}),
                  'received_at', to_char(u.ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                  'uplink_message', jsonb_build_object(
                    'f_port', 6, 'f_cnt', u.i, 'frm_payload', $5::text,
                    'received_at', to_char(u.ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))),
                p.uid
         from u join physical_devices p on p.name = 'replay ' || u.g
         returning correlation_id, ts, physical_uid
       )
       insert into physical_timeseries
         (physical_uid, logical_uid, ts, json_msg, msg_key, raw_correlation_id)
       select raw.physical_uid, null, raw.ts,
              jsonb_build_object('broker_correlation_id', raw.correlation_id,
                'p_uid', raw.physical_uid,
                'timestamp', to_char(raw.ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'timeseries', jsonb_build_array(jsonb_build_object('name', 'temperature', 'value', 0))),
              gen_random_uuid(), raw.correlation_id
       from raw`,
      [first, last, DEVICES, APP, BENCH_FRM_PAYLOAD],
    );
  }
  await pool.query("analyze raw_messages; analyze physical_timeseries");
}

export async function replayRun(
  conn: amqp.ChannelModel,
  pool: pg.Pool,
  env: Record<string, string>,
  decodersDir: string,
  captureQueue: string,
): Promise<Figures> {
  await mkdir(join(decodersDir, "uplink"), { recursive: true });
  await copyFile(DECODER, join(decodersDir, "uplink", `${APP}.js`));
  const loading = Date.now();
  await storeRaw(pool);
  console.error(
    `replay bench: ${REPLAY_MESSAGES} raw uplinks stored in ${((Date.now() - loading) / 1000).toFixed(0)} s`,
  );
  const ch = await conn.createChannel();
  await ch.assertQueue(captureQueue, { durable: true, arguments: { "x-queue-type": "quorum" } });
  await ch.bindQueue(captureQueue, env.LTS_EXCHANGE!, "");
  const config = loadConfig({
    ...env,
    TTN_DECODERS_DIR: decodersDir,
    TTN_DECODE_LOCALLY: APP,
  });
  const logger = createLogger({ level: "warn" });
  const database = createDatabase({ ...config.pg, poolSize: 4 }, logger);
  const amqpConnection = new AmqpConnection({
    url: config.amqp.url,
    name: `bench replay ${randomUUID()}`,
    logger,
  });
  amqpConnection.start();
  const publisher = new ConfirmedPublisher({
    connection: amqpConnection,
    exchange: config.amqp.ltsExchange,
    logger,
  });
  const normaliser = await openRawNormaliser({ config, db: database.db, logger });
  const latencies: number[] = [];
  let started = 0;
  const stop = await consumeCounting(conn, captureQueue, (_body, at) =>
    latencies.push(at - started),
  );
  try {
    await amqpConnection.waitUntilConnected();
    started = Date.now();
    const summary = await replay(
      {
        db: database.db,
        normaliser,
        publisher,
        route: { futureToleranceMs: 3_600_000, pastToleranceMs: undefined },
      },
      parseSelection({ apps: [APP] }),
      { batchSize: BATCH },
    );
    if (summary.published !== REPLAY_MESSAGES) {
      throw new Error(
        `replay bench: published ${summary.published} of ${REPLAY_MESSAGES}: ${JSON.stringify(summary.totals)}`,
      );
    }
    while (latencies.length < REPLAY_MESSAGES) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (Date.now() - started) / 1000;
    return figures(
      `Replay of raw TTN uplinks (${DEVICES} devices, re-decoded, stored, published)`,
      latencies,
      seconds,
    );
  } finally {
    await stop();
    await ch.deleteQueue(captureQueue);
    await ch.close();
    await normaliser.close();
    await publisher.close();
    await amqpConnection.close();
    await database.close();
  }
}
