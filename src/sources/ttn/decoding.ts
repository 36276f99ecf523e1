import { z } from "zod";

import type { DecodeResult } from "./decoders/decoder-pool.js";
import type { DecoderInput } from "./decoders/protocol.js";

/**
 * Local payload decoding, pure rules: which decoder an uplink needs, what goes in, and what a
 * decoder's answer means. The decoders themselves run in decoders/decoder-pool.ts.
 */

/** What a local decoder made of an uplink, as the normaliser uses it. */
export type LocalDecoding =
  | {
      readonly ok: true;
      /** The decoder's name (`uplink/<name>.js`). */
      readonly name: string;
      readonly data: Record<string, unknown>;
      readonly warnings: readonly string[];
      readonly errors: readonly string[];
    }
  | { readonly ok: false; readonly name: string; readonly reason: string; readonly error: string };

export interface DecoderChoice {
  readonly name: string;
  /**
   * True when the operator asked for local decoding (TTN_DECODE_LOCALLY or the device's
   * `source_ids.decoder_name`): a missing decoder is then an error. False when the decoder is
   * only a fallback for an uplink TTN did not decode: a missing file means "nothing to publish",
   * as in IoTa.
   */
  readonly required: boolean;
}

export interface DecoderChoiceOptions {
  /** Applications decoded locally even when TTN decoded them; `all` for every application. */
  readonly locally: readonly string[] | "all";
  /** The device's `source_ids.decoder_name`, when an operator set one. */
  readonly deviceDecoderName?: string | undefined;
}

/** The uplink fields decoding looks at (a subset of a parsed uplink). */
export interface DecodableUplink {
  readonly end_device_ids: { readonly application_ids: { readonly application_id: string } };
  readonly received_at?: string | undefined;
  readonly uplink_message: {
    readonly frm_payload?: string | undefined;
    readonly f_port?: number | undefined;
    readonly received_at?: string | undefined;
    readonly decoded_payload?: Record<string, unknown> | undefined;
  };
}

/**
 * The decoder for an uplink, or undefined when none should run: there is no payload, or TTN
 * decoded it and nobody asked for local decoding. A device's `decoder_name` overrides the
 * application id as the file name (IoTa's decoder service did the same).
 */
export function chooseDecoder(
  u: DecodableUplink,
  options: DecoderChoiceOptions,
): DecoderChoice | undefined {
  if (u.uplink_message.frm_payload === undefined) {
    return undefined;
  }
  const appId = u.end_device_ids.application_ids.application_id;
  if (options.deviceDecoderName !== undefined) {
    return { name: options.deviceDecoderName, required: true };
  }
  if (options.locally === "all" || options.locally.includes(appId)) {
    return { name: appId, required: true };
  }
  return u.uplink_message.decoded_payload === undefined
    ? { name: appId, required: false }
    : undefined;
}

/**
 * TTN's decodeUplink input: bytes of the base64 `frm_payload`, `fPort` (TTS omits 0, so absent
 * means 0) and the receive time (the uplink's time, else the arrival time).
 */
export function decoderInput(u: DecodableUplink, arrivedAt: string): DecoderInput {
  return {
    bytes: [...Buffer.from(u.uplink_message.frm_payload ?? "", "base64")],
    fPort: u.uplink_message.f_port ?? 0,
    recvTime: u.uplink_message.received_at ?? u.received_at ?? arrivedAt,
  };
}

const messages = z
  .array(z.unknown())
  .optional()
  .transform((v) => (v ?? []).map((m) => (typeof m === "string" ? m : JSON.stringify(m))));
const output = z.object({
  data: z.record(z.string(), z.unknown()).optional(),
  warnings: messages,
  errors: messages,
});

/**
 * What a decoder's answer means. TTN's contract: `{data, warnings?, errors?}`. Errors without
 * data fail the uplink; errors beside data are kept with it. NaN and ±Infinity (which JSON
 * cannot carry) are left out with a warning. A missing file for a fallback decoder is not a
 * failure (undefined: nothing to publish).
 */
export function interpretDecodeResult(
  choice: DecoderChoice,
  result: DecodeResult,
): LocalDecoding | undefined {
  const name = choice.name;
  if (!result.ok) {
    if (result.reason === "decoder_not_found" && !choice.required) {
      return undefined;
    }
    return { ok: false, name, reason: result.reason, error: result.error };
  }
  let parsed: z.infer<typeof output>;
  try {
    const value = output.safeParse(JSON.parse(result.output));
    if (!value.success) {
      const error = `decodeUplink's answer is not {data, warnings, errors}: ${describe(value.error)}`;
      return { ok: false, name, reason: "decoder_failed", error };
    }
    parsed = value.data;
  } catch {
    return { ok: false, name, reason: "decoder_failed", error: "decodeUplink returned no JSON" };
  }
  if (parsed.data === undefined) {
    const error =
      parsed.errors.length > 0 ? parsed.errors.join("; ") : "decodeUplink returned no data";
    return { ok: false, name, reason: "decoder_failed", error };
  }
  const warnings = [
    ...parsed.warnings,
    ...result.dropped.map((k) => `${k}: not a finite number; left out`),
  ];
  return { ok: true, name, data: parsed.data, warnings, errors: parsed.errors };
}

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(answer)"}: ${i.message}`).join("; ");
}
