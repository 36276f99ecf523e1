/**
 * What the pd commands that change or list devices need, in one module pd.ts loads on demand
 * (kysely repositories, zod schemas, the event actor, the kysely-backed context).
 */
export { newPhysicalDeviceSchema, physicalDevicePatchSchema } from "../../core/devices.js";
export {
  deleteMappings,
  listPhysicalDevicesWithCurrentLogical,
} from "../../db/repositories/mappings.js";
export {
  createPhysicalDevice,
  deletePhysicalDevice,
  listPhysicalDevices,
  listUnmappedPhysicalDevices,
  updatePhysicalDevice,
} from "../../db/repositories/physical-devices.js";
export { RegistryError } from "../../db/repositories/registry-error.js";
export { cliActor, withActor } from "../../events/actor.js";
export { readJsonObject, validate, withDatabase } from "../context.js";
