import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

import { z } from "zod";

import type { Logger } from "../../core/logger.js";
import { parseInstant } from "../../core/time.js";
import type { DatabaseHandle } from "../../db/database.js";
import {
  streamMessages,
  type MessageQuery,
  type StoredMessage,
} from "../../db/repositories/messages.js";
import { ApiError, invalidParam, notFound } from "../errors.js";
import {
  CSV_HEADER,
  lastPeriodMs,
  messageCsv,
  messageJson,
  type JsonShape,
} from "../messages-format.js";
import { route, type Route } from "../route.js";
import { failure } from "../schemas/common.js";
import { boolParam, instantParam, integerDoc, intParam, textParam } from "../schemas/params.js";
import type { Semaphore } from "../semaphore.js";

const EPOCH = "1970-01-01T00:00:00Z";
/** IoTa's row limit when no count is given. */
const DEFAULT_COUNT = 131_072;
const STREAM_WAIT_MS = 30_000;

const countParam = intParam
  .pipe(
    z
      .number()
      .gt(0, "ensure this value is greater than 0")
      .max(65_536, "ensure this value is less than or equal to 65536"),
  )
  .meta(integerDoc({ exclusiveMinimum: 0, maximum: 65_536 }));

const messagesQuery = z.object({
  p_uid: intParam.optional().meta({ description: "Physical device uid (wins over l_uid)." }),
  l_uid: intParam.optional().meta({ description: "Logical device uid." }),
  count: countParam.optional().meta({
    description: "At most this many messages. Default 131072 for JSON, all for CSV.",
  }),
  last: textParam.optional().meta({
    description:
      "A period back from now, e.g. `24h`, `7d`, `2w`, `1m` (4 weeks), `1y` (52 weeks). Overrides start and end.",
  }),
  start: instantParam
    .optional()
    .meta({ description: "Exclusive lower bound. Default 1970-01-01T00:00:00Z." }),
  end: instantParam.optional().meta({ description: "Inclusive upper bound. Default now." }),
  include_received_at: boolParam(false),
  only_timestamp: boolParam(false),
  format: z.enum(["json", "csv"]).optional().meta({
    description: "Extension: `csv` for IoTa's exporter CSV (also chosen by `Accept: text/csv`).",
  }),
  order: z.enum(["asc", "desc"]).optional().meta({
    description:
      "Extension: `desc` (newest first) is IoTa's and the JSON default; CSV defaults to `asc`.",
  }),
});

type Query = z.output<typeof messagesQuery>;

/** The rows /messages reads: IoTa's checks and defaults, in IoTa's order. */
function messageQuery(query: Query, csv: boolean, nowMs: number): MessageQuery {
  const uid = query.p_uid ?? query.l_uid;
  if (uid === undefined) {
    throw notFound("Failed to retrieve messages");
  }
  if (query.end !== undefined) {
    if (query.start !== undefined && parseInstant(query.start)! >= parseInstant(query.end)!) {
      throw invalidParam("query", "start", "ensure start value is less than end");
    }
    if (query.count !== undefined && query.start === undefined) {
      throw invalidParam("query", "count", "only count and end is not supported");
    }
  }
  let start = query.start ?? EPOCH;
  let end = query.end ?? new Date(nowMs).toISOString();
  if (query.last !== undefined) {
    end = new Date(nowMs).toISOString();
    start = new Date(nowMs - lastPeriodMs(query.last, nowMs)).toISOString();
  }
  const limit = query.count ?? (csv ? undefined : DEFAULT_COUNT);
  return {
    device: query.p_uid !== undefined ? { puid: uid } : { luid: uid },
    start,
    end,
    order: query.order ?? (csv ? "asc" : "desc"),
    ...(limit !== undefined ? { limit } : {}),
  };
}

/** The response body, batch by batch: a JSON array, or CSV with IoTa's exporter header. */
async function* encode(
  first: StoredMessage[] | undefined,
  rest: AsyncIterator<StoredMessage[]>,
  csv: boolean,
  shape: JsonShape,
): AsyncGenerator<string> {
  yield csv ? CSV_HEADER : "[";
  let batch = first;
  let separator = "";
  while (batch !== undefined) {
    if (csv) {
      yield batch.map(messageCsv).join("");
    } else if (batch.length > 0) {
      yield separator + batch.map((m) => JSON.stringify(messageJson(m, shape))).join(",");
      separator = ",";
    }
    const next = await rest.next();
    batch = next.done ? undefined : next.value;
  }
  if (!csv) {
    yield "]";
  }
}

/** GET /messages: IoTa's query, streamed from a server-side cursor, as JSON or CSV. */
export function messageRoutes(
  database: DatabaseHandle,
  streams: Semaphore,
  logger: Logger,
): Route[] {
  return [
    route({
      method: "get",
      path: "/messages",
      summary: "Stored messages of one device, newest first",
      description:
        "Rows with start < ts <= end. Each JSON object has `ts_utc` (seconds, UTC), " +
        "`received_at_utc` when asked for, and every top-level key of the stored message. " +
        "Streamed, so a large export starts at once and is never held in memory.",
      tags: ["messages"],
      access: "read",
      query: messagesQuery,
      responses: {
        "200": {
          description: "Messages.",
          content: {
            "application/json": { schema: z.array(z.record(z.string(), z.unknown())) },
            "text/csv": { schema: z.string() },
          },
        },
        "404": failure("Neither p_uid nor l_uid was given."),
        "503": failure("Too many exports are running; retry."),
      },
      handler: async ({ req, res, query }) => {
        const csv =
          query.format === "csv" ||
          (query.format === undefined &&
            req.accepts(["application/json", "text/csv"]) === "text/csv");
        const selection = messageQuery(query, csv, Date.now());
        if (!(await streams.acquire(STREAM_WAIT_MS))) {
          throw new ApiError(503, "too many exports are running; retry later", {
            "Retry-After": "5",
          });
        }
        const rows = streamMessages(database, selection);
        try {
          // The first batch is read before anything is sent, so a failure to query is still an
          // ordinary error response; a failure after that can only cut the response short.
          const first = await rows.next();
          const body = encode(first.done ? undefined : first.value, rows, csv, {
            includeReceivedAt: query.include_received_at,
            onlyTimestamp: query.only_timestamp,
          });
          res.status(200).type(csv ? "text/csv; charset=utf-8" : "application/json");
          if (csv) {
            const device =
              "puid" in selection.device
                ? `p_uid_${selection.device.puid}`
                : `l_uid_${selection.device.luid}`;
            res.attachment(`messages_${device}.csv`);
          }
          await pipeline(Readable.from(body), res).catch((err: unknown) => {
            if ((err as { code?: string }).code !== "ERR_STREAM_PREMATURE_CLOSE") {
              logger.warn({ err }, "/messages stream failed part-way");
            }
          });
          return undefined;
        } finally {
          await rows.return(undefined);
          streams.release();
        }
      },
    }),
  ];
}
