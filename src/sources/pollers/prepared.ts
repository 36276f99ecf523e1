import { PermanentError } from "../../core/errors.js";
import { jsonTooDeep, TOO_DEEP, TOO_DEEP_ERROR } from "../json-depth.js";
import { POLL_CONTEXT_HEADER, type IngestItem, type Normalised } from "../pipeline.js";
import { jsonbRefuses } from "../raw-copy.js";

/** What the raw store keeps of a vendor response or record: parsed JSON, or the text itself. */
export type RawBody = { readonly json: unknown } | { readonly text: string };

/** One unit of polled data, worked out (purely) before anything is stored. */
export interface Prepared {
  /** Newest reading in it, ISO-8601 with offset; the raw message's `ts` when known. */
  readonly newest: string | undefined;
  readonly raw: RawBody;
  /** Runs after the raw copy is stored; throws PermanentError for bad content. */
  readonly normalise: () => Normalised | undefined;
}

/** Parses a vendor body; bad JSON (truncated, HTML error page…) is PermanentError `invalid_json`. */
export function parseVendorJson(text: string): unknown {
  if (jsonTooDeep(text)) {
    throw new PermanentError(TOO_DEEP, `response is ${TOO_DEEP_ERROR}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new PermanentError("invalid_json", `response is not JSON: ${(err as Error).message}`);
  }
}

/**
 * The raw-store form of a body. jsonb holds neither NUL characters nor the `\u0000` escape nor
 * a lone UTF-16 surrogate, so such bodies, and bodies that are not JSON, are kept as text (NUL
 * replaced by U+FFFD).
 */
export function rawBody(text: string, json?: unknown): RawBody {
  const clean = text.replaceAll("\u0000", "\uFFFD");
  if (json === undefined || clean !== text || jsonTooDeep(text) || jsonbRefuses(text, json)) {
    return { text: clean };
  }
  return { json };
}

/** A body that cannot be used at all: kept raw, rejected with `error` when normalised. */
export function failed(text: string, error: PermanentError): Prepared {
  let json: unknown;
  try {
    json = jsonTooDeep(text) ? undefined : (JSON.parse(text) as unknown);
  } catch {
    json = undefined;
  }
  return {
    newest: undefined,
    raw: rawBody(text, json),
    normalise: () => {
      throw error;
    },
  };
}

/** The rejection of a body that was cut at the size limit. */
export function oversized(limitBytes: number): PermanentError {
  return new PermanentError(
    "oversized_response",
    `response larger than ${limitBytes} bytes (POLLER_MAX_RESPONSE_BYTES); its first ${limitBytes} bytes are kept raw`,
  );
}

/**
 * The pipeline's view of prepared data. `context` is what the poller's normaliser needs besides
 * the raw answer (JSON); given, a dead letter carries it, and `broker dlq replay` can normalise
 * the stored answer again. Left out for answers that can only be refused whole.
 */
export function ingestItem(
  prepared: Prepared,
  correlationId: string,
  arrivedAt: string,
  context?: object,
): IngestItem {
  return {
    raw: { correlationId, ts: prepared.newest ?? arrivedAt, ...prepared.raw },
    normalise: prepared.normalise,
    ...(context === undefined
      ? {}
      : { replayHeaders: { [POLL_CONTEXT_HEADER]: JSON.stringify(context) } }),
  };
}
