import { PermanentError } from "../core/errors.js";
import { mqttCorrelationId } from "../mqtt/payload.js";
import { mqttSettings } from "../mqtt/settings.js";
import type { Dependencies } from "../runtime/component.js";
import { prepareRecord, recordOf } from "../sources/axistech/normalise.js";
import { DRAGINO_SOURCE } from "../sources/dragino/source.js";
import { prepareGroup } from "../sources/eagleio/normalise.js";
import { prepareLatest, type SensorGroupRef } from "../sources/greenbrain/normalise.js";
import { ictMqttReplaySpec } from "../sources/ict-mqtt/source.js";
import { mqttItems, type MqttSourceSpec } from "../sources/mqtt-source.js";
import {
  IngestPipeline,
  MQTT_TOPIC_HEADER,
  POLL_CONTEXT_HEADER,
  type IngestItem,
} from "../sources/pipeline.js";
import { failed, ingestItem, parseVendorJson, type Prepared } from "../sources/pollers/prepared.js";
import { WOMBAT_SOURCE } from "../sources/wombat/source.js";
import { YDOC_SOURCE } from "../sources/ydoc/source.js";
import { SOURCE_DEAD_LETTER_QUEUES } from "./catalogue.js";
import { headerText } from "./dead-letter.js";
import type { SourceLetter, SourceReplayer } from "./service.js";

/**
 * Replay of MQTT-source and poller dead letters, in this process: the source's own pure rules
 * (decoder and normaliser) and the shared ingest pipeline (raw store, device, confirmed publish,
 * and a fresh confirmed dead letter with today's reason if it is still refused). Unlike a
 * republish to the MQTT broker, the outcome is known and durable before the dead letter is
 * removed, and neither the source nor the MQTT broker has to be running (doc/operations.md).
 * Pollers cannot fetch an old answer again; their stored answer is normalised again with the
 * context the dead letter recorded (`x-broker-poll-context`).
 */

/** What the replay needs: the database and AMQP connection of the process (CLI or API). */
export type IngestReplayDeps = Dependencies;

/** The ingest items of one dead letter, or undefined when it lacks what a replay needs. */
type Build = (letter: SourceLetter) => IngestItem[] | undefined;

function notReplayable(source: string): string {
  return `no_ingest_path_for_${source}`;
}

/** Runs the letters' items through a pipeline of `source`; true per letter once durable. */
function pipelineReplayer(
  deps: IngestReplayDeps,
  source: string,
  prepare: () => Promise<Build>,
): SourceReplayer {
  const deadLetterQueue = SOURCE_DEAD_LETTER_QUEUES[source];
  return async (letters) => {
    let build: Build;
    try {
      build = await prepare();
    } catch (err) {
      // E.g. the ICT layouts file cannot be read: nothing is replayed, everything kept.
      deps.logger.warn({ err, source }, "cannot set up the replay of this source; letters kept");
      return letters.map(() => "replay_setup_failed");
    }
    const out: (boolean | string)[] = letters.map(() => notReplayable(source));
    const runnable: { index: number; items: IngestItem[] }[] = [];
    letters.forEach((letter, index) => {
      const items = build(letter);
      if (items !== undefined) {
        runnable.push({ index, items });
      }
    });
    if (runnable.length === 0) {
      return out;
    }
    const pipeline = new IngestPipeline(deps, source, {
      ...(deadLetterQueue === undefined ? {} : { deadLetterQueue }),
      connectWaitMs: 2_000,
    });
    try {
      // Resolves once every item is stored and published, or dead-lettered afresh, confirmed.
      await pipeline.ingest(runnable.flatMap((r) => r.items));
      for (const r of runnable) {
        out[r.index] = true;
      }
    } catch (err) {
      deps.logger.warn({ err, source }, "replay through the ingest path failed; letters kept");
      for (const r of runnable) {
        out[r.index] = "ingest_failed";
      }
    } finally {
      await pipeline.close();
    }
    return out;
  };
}

/** An MQTT dead letter as if it had just arrived on its recorded topic. */
function mqttBuild<T>(deps: IngestReplayDeps, spec: MqttSourceSpec<T>): Build {
  const { maxPayloadBytes } = mqttSettings(deps.config, spec);
  return ({ body, headers }) => {
    const topic = headerText(headers[MQTT_TOPIC_HEADER]);
    if (topic === undefined) {
      return undefined;
    }
    const correlationId = mqttCorrelationId(spec.sourceName, topic, body);
    const arrival = { topic, correlationId, arrivedAt: new Date().toISOString() };
    const { items, notes } = mqttItems(spec, { topic, payload: body }, arrival, maxPayloadBytes);
    if (notes.length > 0) {
      deps.logger.info(
        { broker_correlation_id: correlationId, topic, dropped: notes },
        "replay: left out of the normalised messages",
      );
    }
    return items;
  };
}

/** A poller's stored answer normalised again with its recorded context. */
function pollBuild(
  prepare: (text: string, context: Record<string, unknown>, cid: string) => Prepared,
): Build {
  return ({ letter, body, headers }) => {
    const contextText = headerText(headers[POLL_CONTEXT_HEADER]);
    const cid = letter.messageId ?? letter.correlationId;
    if (contextText === undefined || cid === undefined) {
      return undefined;
    }
    let context: Record<string, unknown>;
    try {
      context = JSON.parse(contextText) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    const text = body.toString("utf8");
    let prepared: Prepared;
    try {
      prepared = prepare(text, context, cid);
    } catch (err) {
      if (!(err instanceof PermanentError)) {
        throw err;
      }
      prepared = failed(text, err);
    }
    return [ingestItem(prepared, cid, new Date().toISOString(), context)];
  };
}

const POLL_RULES: Readonly<
  Record<string, (text: string, context: Record<string, unknown>, cid: string) => Prepared>
> = {
  greenbrain: (text, context, cid) => prepareLatest(text, context.group as SensorGroupRef, cid),
  ict_eagleio: (text, context, cid) => {
    const nodes = parseVendorJson(text);
    if (!Array.isArray(nodes) || typeof context.key !== "string") {
      throw new PermanentError("invalid_response", "the stored answer is not a group's node list");
    }
    return prepareGroup({ key: context.key, nodes }, cid);
  },
  axistech: (text, _context, cid) => prepareRecord(recordOf(parseVendorJson(text)), cid),
};

/** The in-process ingest paths, by `sources.source_name`. */
export function ingestReplayers(deps: IngestReplayDeps): Map<string, SourceReplayer> {
  const replayers = new Map<string, SourceReplayer>();
  for (const spec of [YDOC_SOURCE, WOMBAT_SOURCE, DRAGINO_SOURCE]) {
    replayers.set(
      spec.sourceName,
      pipelineReplayer(deps, spec.sourceName, async () => mqttBuild(deps, spec)),
    );
  }
  replayers.set(
    "ict_mqtt",
    pipelineReplayer(deps, "ict_mqtt", async () => mqttBuild(deps, await ictMqttReplaySpec(deps))),
  );
  for (const [source, rule] of Object.entries(POLL_RULES)) {
    const build = pollBuild(rule);
    replayers.set(
      source,
      pipelineReplayer(deps, source, async () => build),
    );
  }
  return replayers;
}
