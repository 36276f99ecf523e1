import { describe, expect, it } from "vitest";

import { decoderNameFor, decoderNameIndex } from "../../src/sources/ttn/decoder-names.js";
import {
  chooseDecoder,
  decoderInput,
  interpretDecodeResult,
  type DecodableUplink,
} from "../../src/sources/ttn/decoding.js";

const base: DecodableUplink = {
  end_device_ids: { application_ids: { application_id: "app1" } },
  received_at: "2024-01-01T00:00:01Z",
  uplink_message: { frm_payload: "AQI=", f_port: 2, received_at: "2024-01-01T00:00:00.123456789Z" },
};
const ttnDecoded: DecodableUplink = {
  ...base,
  uplink_message: { ...base.uplink_message, decoded_payload: { t: 1 } },
};
const ok = (output: unknown, dropped: string[] = []) =>
  ({ ok: true, output: JSON.stringify(output), dropped }) as const;

describe("choosing a local decoder", () => {
  it("decodes locally when TTN did not, by application id, as a fallback", () => {
    expect(chooseDecoder(base, { locally: [] })).toEqual({ name: "app1", required: false });
  });

  it("leaves TTN's decoded_payload alone unless asked", () => {
    expect(chooseDecoder(ttnDecoded, { locally: [] })).toBeUndefined();
    expect(chooseDecoder(ttnDecoded, { locally: ["other"] })).toBeUndefined();
  });

  it("decodes locally when the application or all are configured, even if TTN decoded", () => {
    expect(chooseDecoder(ttnDecoded, { locally: ["app1"] })).toEqual({
      name: "app1",
      required: true,
    });
    expect(chooseDecoder(ttnDecoded, { locally: "all" })).toEqual({ name: "app1", required: true });
  });

  it("lets a device's decoder_name override the file name", () => {
    expect(chooseDecoder(ttnDecoded, { locally: [], deviceDecoderName: "custom" })).toEqual({
      name: "custom",
      required: true,
    });
  });

  it("runs nothing for an uplink without a payload", () => {
    const empty = { ...base, uplink_message: { f_port: 1 } };
    expect(chooseDecoder(empty, { locally: "all", deviceDecoderName: "x" })).toBeUndefined();
  });

  it("builds TTN's input; an absent f_port is 0", () => {
    expect(decoderInput(base, "2030-01-01T00:00:00Z")).toEqual({
      bytes: [1, 2],
      fPort: 2,
      recvTime: "2024-01-01T00:00:00.123456789Z",
    });
    const noPort = { ...base, uplink_message: { frm_payload: "AQI=" } };
    expect(decoderInput(noPort, "2030-01-01T00:00:00Z")).toMatchObject({
      fPort: 0,
      recvTime: "2024-01-01T00:00:01Z",
    });
  });

  it("finds devices' decoder names by DevEUI, else by application and device id", () => {
    const index = decoderNameIndex([
      { dev_eui: "00aa", app_id: "a", dev_id: "d1", decoder_name: "by-eui" },
      { app_id: "a", dev_id: "d2", decoder_name: "by-id" },
      { app_id: "a", dev_id: "d3", decoder_name: "" },
    ]);
    const ids = (dev: string, eui?: string) => ({
      device_id: dev,
      application_ids: { application_id: "a" },
      dev_eui: eui,
    });
    expect(decoderNameFor(index, ids("zz", "00AA"))).toBe("by-eui");
    expect(decoderNameFor(index, ids("d2"))).toBe("by-id");
    expect(decoderNameFor(index, ids("d3"))).toBeUndefined();
  });
});

describe("what a decoder's answer means", () => {
  const required = { name: "app1", required: true };
  const fallback = { name: "app1", required: false };

  it("takes data, warnings and errors", () => {
    expect(
      interpretDecodeResult(required, ok({ data: { t: 1 }, warnings: ["w"], errors: ["e"] })),
    ).toEqual({ ok: true, name: "app1", data: { t: 1 }, warnings: ["w"], errors: ["e"] });
  });

  it("fails on errors without data, and on no data at all", () => {
    expect(interpretDecodeResult(required, ok({ errors: ["bad port"] }))).toEqual({
      ok: false,
      name: "app1",
      reason: "decoder_failed",
      error: "bad port",
    });
    expect(interpretDecodeResult(required, ok({}))).toMatchObject({ ok: false, error: /no data/ });
    expect(interpretDecodeResult(required, ok({ data: [1, 2] }))).toMatchObject({
      ok: false,
      reason: "decoder_failed",
    });
  });

  it("warns about values left out because they were not finite", () => {
    expect(interpretDecodeResult(required, ok({ data: { a: 1 } }, ["b"]))).toMatchObject({
      ok: true,
      warnings: ["b: not a finite number; left out"],
    });
  });

  it("treats a missing fallback decoder as 'nothing to publish', a missing required one as a failure", () => {
    const missing = { ok: false, reason: "decoder_not_found", error: "no decoder file" } as const;
    expect(interpretDecodeResult(fallback, missing)).toBeUndefined();
    expect(interpretDecodeResult(required, missing)).toMatchObject({
      ok: false,
      reason: "decoder_not_found",
    });
    const timeout = { ok: false, reason: "decoder_timeout", error: "slow" } as const;
    expect(interpretDecodeResult(fallback, timeout)).toMatchObject({
      ok: false,
      reason: "decoder_timeout",
    });
  });
});
