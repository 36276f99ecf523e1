import { createFrredWriter } from "../delivery/frred/frred-writer.js";
import { createMapper } from "../mapper/mapper.js";
import { createTtnWebhook } from "../sources/ttn/webhook.js";
import type { Component, Dependencies } from "./component.js";

/** Every component `broker run` knows, by the name used on the command line. */
export const COMPONENT_FACTORIES = {
  "ttn-webhook": createTtnWebhook,
  mapper: createMapper,
  frred: createFrredWriter,
} satisfies Record<string, (deps: Dependencies) => Component>;

export type ComponentName = keyof typeof COMPONENT_FACTORIES;

export const COMPONENT_NAMES = Object.keys(COMPONENT_FACTORIES) as ComponentName[];

/** Expands `all`, removes repeats, and rejects unknown names with one clear message. */
export function resolveComponentNames(names: readonly string[]): ComponentName[] {
  const wanted = names.includes("all") ? COMPONENT_NAMES : names;
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
