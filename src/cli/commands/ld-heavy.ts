/** What the ld commands that change or list devices need, loaded on demand by ld.ts. */
export { logicalDevicePatchSchema, newLogicalDeviceSchema } from "../../core/devices.js";
export {
  createLogicalDevice,
  deleteLogicalDevice,
  listLogicalDevices,
  updateLogicalDevice,
} from "../../db/repositories/logical-devices.js";
export { deleteMappings, startMapping } from "../../db/repositories/mappings.js";
export { getPhysicalDevice } from "../../db/repositories/physical-devices.js";
export { RegistryError } from "../../db/repositories/registry-error.js";
export { cliActor, withActor } from "../../events/actor.js";
export { readJsonObject, validate, withDatabase } from "../context.js";
