import { createApi } from "../api/api.js";
import { createFrredWriter } from "../delivery/frred/frred-writer.js";
import { createInfluxWriter } from "../delivery/influxdb/influxdb-writer.js";
import { createUbidotsWriter } from "../delivery/ubidots/ubidots-writer.js";
import { createEventRelay } from "../events/relay.js";
import { createMapper } from "../mapper/mapper.js";
import { createAxisTechPoller } from "../sources/axistech/poller.js";
import { createDraginoSource } from "../sources/dragino/source.js";
import { createEagleIoPoller } from "../sources/eagleio/poller.js";
import { createGreenBrainPoller } from "../sources/greenbrain/poller.js";
import { createIctMqttSource } from "../sources/ict-mqtt/source.js";
import { createTtnWebhook } from "../sources/ttn/webhook.js";
import { createWombatSource } from "../sources/wombat/source.js";
import { createYdocSource } from "../sources/ydoc/source.js";
import { createWeb } from "../web/web.js";
import type { Component, Dependencies } from "../runtime/component.js";
import { domainDeps } from "./queue-consumer.js";

/** Every component `broker run` knows, by the name used on the command line. */
export const COMPONENT_FACTORIES = {
  "ttn-webhook": createTtnWebhook,
  mapper: (deps: Dependencies) => createMapper(domainDeps(deps)),
  frred: (deps: Dependencies) => createFrredWriter(domainDeps(deps)),
  ubidots: (deps: Dependencies) => createUbidotsWriter(domainDeps(deps)),
  influxdb: (deps: Dependencies) => createInfluxWriter(domainDeps(deps)),
  "event-relay": createEventRelay,
  greenbrain: createGreenBrainPoller,
  eagleio: createEagleIoPoller,
  axistech: createAxisTechPoller,
  ydoc: createYdocSource,
  wombat: createWombatSource,
  dragino: createDraginoSource,
  "ict-mqtt": createIctMqttSource,
  api: createApi,
  web: createWeb,
} satisfies Record<string, (deps: Dependencies) => Component>;

export type ComponentName = keyof typeof COMPONENT_FACTORIES;

export const COMPONENT_NAMES = Object.keys(COMPONENT_FACTORIES) as ComponentName[];

/**
 * Components `all` leaves out: the vendor pollers call outside services with credentials of
 * their own, and the MQTT sources need an MQTT broker and hold a persistent session there, so
 * they run only when named (`broker run all greenbrain wombat`).
 */
const NAMED_ONLY: readonly string[] = [
  "ubidots",
  "influxdb",
  "greenbrain",
  "eagleio",
  "axistech",
  "ydoc",
  "wombat",
  "dragino",
  "ict-mqtt",
];

/** Expands `all`, removes repeats, and rejects unknown names with one clear message. */
export function resolveComponentNames(names: readonly string[]): ComponentName[] {
  const wanted = names.flatMap((n) =>
    n === "all" ? COMPONENT_NAMES.filter((c) => !NAMED_ONLY.includes(c)) : [n],
  );
  const unknown = wanted.filter((n) => !(n in COMPONENT_FACTORIES));
  if (unknown.length > 0) {
    throw new Error(
      `unknown component ${unknown.join(", ")}; known: ${COMPONENT_NAMES.join(", ")}, all`,
    );
  }
  if (wanted.length === 0) {
    throw new Error(`name at least one component: ${COMPONENT_NAMES.join(", ")}, all`);
  }
  return [...new Set(wanted)] as ComponentName[];
}
