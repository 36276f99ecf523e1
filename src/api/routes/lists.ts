import type { DeviceListQuery } from "../../db/repositories/logical-devices.js";
import { invalidParam } from "../errors.js";

/** The repository query for a device list's opt-in filters and paging. */
export function deviceListQuery(query: {
  name?: string | undefined;
  prop_name?: string | undefined;
  prop_value?: string | undefined;
  limit?: number | undefined;
  offset?: number | undefined;
}): DeviceListQuery {
  if ((query.prop_name === undefined) !== (query.prop_value === undefined)) {
    const missing = query.prop_name === undefined ? "prop_name" : "prop_value";
    throw invalidParam("query", missing, "prop_name and prop_value must be given together");
  }
  return {
    ...(query.name !== undefined ? { name: query.name } : {}),
    ...(query.prop_name !== undefined && query.prop_value !== undefined
      ? { property: { name: query.prop_name, value: query.prop_value } }
      : {}),
    ...(query.limit !== undefined ? { limit: query.limit } : {}),
    ...(query.offset !== undefined ? { offset: query.offset } : {}),
  };
}

/** One page of an in-memory list (for lists that are small by nature). */
export function page<T>(
  items: T[],
  query: { limit?: number | undefined; offset?: number | undefined },
): T[] {
  const start = query.offset ?? 0;
  return items.slice(start, query.limit === undefined ? undefined : start + query.limit);
}
