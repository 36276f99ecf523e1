/**
 * Timestamps in the waist are ISO-8601 strings with an explicit offset. The original string is
 * kept (TTN sends nanoseconds; a JavaScript Date keeps milliseconds). Reading them is
 * `timestamps.ts`'s job (one grammar, PostgreSQL's); these names stay here for their callers.
 */
export { hasOffset, parseInstant, parseInstantMicros } from "./timestamps.js";
