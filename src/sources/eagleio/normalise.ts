import { PermanentError } from "../../core/errors.js";
import type { TimeseriesPoint } from "../../core/message.js";
import { rawBody, type Prepared } from "../pollers/prepared.js";
import { instantOf, pythonIsoformat, withOffset } from "../pollers/times.js";

/** The `_class` of the nodes IoTa forwards (numeric sensor points). */
export const NUMBER_POINT = "io.eagle.models.node.point.NumberPoint";

type Node = Readonly<Record<string, unknown>>;

/** The NumberPoints of one logger: every point whose name's first word is `key`. */
export interface EagleGroup {
  readonly key: string;
  readonly nodes: readonly Node[];
}

/** Nodes that cannot be attributed to a group, with why. */
export interface Unusable {
  readonly node: unknown;
  readonly problem: string;
}

function isObject(value: unknown): value is Node {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Groups a `GET /nodes` answer: NumberPoints only (other node classes are ignored, as in IoTa),
 * keyed by the first space-separated word of the node name (`mncm1k703 battV` → `mncm1k703`).
 * A group holds exactly the points whose first word IS its key. IoTa took every point whose name
 * merely CONTAINED the key, so a logger named `mncm1k70` swallowed the points of `mncm1k703`.
 * Groups keep the order in which their keys first appear; points keep the vendor's order.
 * Throws PermanentError when the answer is not a JSON array.
 */
export function groupNumberPoints(nodes: unknown): { groups: EagleGroup[]; unusable: Unusable[] } {
  if (!Array.isArray(nodes)) {
    throw new PermanentError("invalid_response", "expected a JSON array of nodes");
  }
  const byKey = new Map<string, Node[]>();
  const unusable: Unusable[] = [];
  for (const node of nodes) {
    if (!isObject(node)) {
      unusable.push({ node, problem: "not a JSON object" });
      continue;
    }
    if (node._class !== NUMBER_POINT) {
      continue;
    }
    const key = typeof node.name === "string" ? node.name.split(" ")[0] : undefined;
    if (!key) {
      unusable.push({ node, problem: "a NumberPoint without a name that starts with a word" });
      continue;
    }
    const members = byKey.get(key) ?? [];
    members.push(node);
    byKey.set(key, members);
  }
  return { groups: [...byKey].map(([key, members]) => ({ key, nodes: members })), unusable };
}

interface Reading {
  readonly name: string;
  readonly value: unknown;
  readonly time: string | undefined;
}

function readingsOf(group: EagleGroup): Reading[] {
  const readings: Reading[] = [];
  for (const node of group.nodes) {
    if (node.currentValue === undefined || node.currentValue === null) {
      continue; // a point that has never reported: nothing to publish
    }
    let time: string | undefined;
    if (node.currentTime !== undefined && node.currentTime !== null) {
      time = typeof node.currentTime === "string" ? withOffset(node.currentTime) : undefined;
      if (time === undefined) {
        throw new PermanentError(
          "invalid_timestamp",
          `node ${JSON.stringify(node.name)} has currentTime ${JSON.stringify(node.currentTime)}, not an ISO-8601 date-time`,
        );
      }
    }
    const name = (node.name as string).replaceAll(`${group.key} `, "");
    readings.push({ name, value: node.currentValue, time });
  }
  return readings;
}

/**
 * IoTa's EagleIO rules for one group, pure: each point with a current value becomes
 * `{name: <node name without "<key> ">, value: currentValue}`; the message time is the newest
 * `currentTime` (Python isoformat); a point at another time carries its own. The raw message is
 * the group's node list; the device is found by `sensor_group_id` = key. Never throws: bad
 * content is kept raw and rejected when normalised.
 */
export function prepareGroup(group: EagleGroup, correlationId: string): Prepared {
  const raw = rawBody(JSON.stringify(group.nodes), group.nodes);
  let readings: Reading[];
  try {
    readings = readingsOf(group);
  } catch (err) {
    return {
      newest: undefined,
      raw,
      normalise: () => {
        throw err;
      },
    };
  }
  const times = readings.flatMap((r) => (r.time === undefined ? [] : [r.time]));
  const newest = times.reduce<string | undefined>(
    (a, t) => (a === undefined || instantOf(t) > instantOf(a) ? t : a),
    undefined,
  );
  if (readings.length === 0) {
    return { newest, raw, normalise: () => undefined };
  }
  if (newest === undefined) {
    const error = new PermanentError("no_timestamp", `no point of ${group.key} has a currentTime`);
    return {
      newest,
      raw,
      normalise: () => {
        throw error;
      },
    };
  }
  const newestMs = instantOf(newest);
  const timestamp = pythonIsoformat(newest);
  const timeseries: TimeseriesPoint[] = readings.map((r) => {
    const point = { name: r.name, value: r.value as TimeseriesPoint["value"] };
    return r.time === undefined || instantOf(r.time) === newestMs
      ? point
      : { ...point, timestamp: pythonIsoformat(r.time) };
  });
  const sourceIds = { sensor_group_id: group.key };
  return {
    newest: timestamp,
    raw,
    normalise: () => ({
      device: {
        lookup: sourceIds,
        create: {
          name: group.key,
          location: null,
          source_ids: sourceIds,
          properties: { ict_eagleio: group.nodes, creation_correlation_id: correlationId },
        },
        sighting: { lastSeen: timestamp },
      },
      messages: (pUid) => [
        { broker_correlation_id: correlationId, p_uid: pUid, timestamp, timeseries },
      ],
    }),
  };
}
