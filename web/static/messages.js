// Reading a logical device's messages through /messages.
import { api } from "./api.js";

/** Every message of a logical device between two instants (the API's limit is per request). */
export async function fetchMessages(luid, startIso, endIso) {
  const all = [];
  let start = startIso;
  for (;;) {
    const page = await api.get(
      `/messages?l_uid=${luid}&include_received_at=true&order=asc&count=65536` +
        `&start=${encodeURIComponent(start)}&end=${encodeURIComponent(endIso)}`,
    );
    all.push(...page);
    if (page.length < 65536) {
      return all;
    }
    start = page[page.length - 1].ts_utc;
  }
}
