import { describe, expect, it } from "vitest";

import { authConfigured, checkWebhookAuth, type WebhookAuth } from "../../src/sources/ttn/auth.js";

const none: WebhookAuth = { secret: undefined, secretHeader: "X-Webhook-Secret", basic: undefined };
const secret: WebhookAuth = { ...none, secret: "s3cret-value" };
const basic: WebhookAuth = { ...none, basic: { user: "tts", password: "pa:ss" } };
const both: WebhookAuth = { ...secret, basic: basic.basic };
const basicHeader = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

describe("TTN webhook authentication", () => {
  it("lets everything through when nothing is configured (IoTa's behaviour)", () => {
    expect(authConfigured(none)).toBe(false);
    expect(checkWebhookAuth({}, none)).toBeUndefined();
  });

  it("checks the shared-secret header, case-insensitively by name", () => {
    expect(authConfigured(secret)).toBe(true);
    expect(checkWebhookAuth({ "x-webhook-secret": "s3cret-value" }, secret)).toBeUndefined();
    expect(checkWebhookAuth({}, secret)).toBe("missing X-Webhook-Secret header");
    expect(checkWebhookAuth({ "x-webhook-secret": "s3cret-valu" }, secret)).toBe(
      "wrong X-Webhook-Secret header",
    );
    expect(checkWebhookAuth({ "x-webhook-secret": "" }, secret)).toMatch(/wrong/);
  });

  it("uses the configured header name", () => {
    const custom = { ...secret, secretHeader: "X-Api-Key" };
    expect(checkWebhookAuth({ "x-api-key": "s3cret-value" }, custom)).toBeUndefined();
    expect(checkWebhookAuth({ "x-webhook-secret": "s3cret-value" }, custom)).toMatch(/missing/);
  });

  it("checks Basic credentials (a colon may be in the password)", () => {
    expect(checkWebhookAuth({ authorization: basicHeader("tts", "pa:ss") }, basic)).toBeUndefined();
    expect(checkWebhookAuth({ authorization: basicHeader("tts", "pa") }, basic)).toBe(
      "wrong Basic credentials",
    );
    expect(checkWebhookAuth({ authorization: basicHeader("other", "pa:ss") }, basic)).toBe(
      "wrong Basic credentials",
    );
    expect(checkWebhookAuth({ authorization: "Bearer x" }, basic)).toBe(
      "missing Basic credentials",
    );
    expect(checkWebhookAuth({}, basic)).toBe("missing Basic credentials");
  });

  it("requires every configured credential when both are set", () => {
    const good = { "x-webhook-secret": "s3cret-value", authorization: basicHeader("tts", "pa:ss") };
    expect(checkWebhookAuth(good, both)).toBeUndefined();
    expect(checkWebhookAuth({ ...good, authorization: undefined }, both)).toMatch(/Basic/);
    expect(checkWebhookAuth({ ...good, "x-webhook-secret": "no" }, both)).toMatch(/X-Webhook/);
  });

  it("never repeats a secret in what it reports", () => {
    const problem = checkWebhookAuth({ "x-webhook-secret": "s3cret-valuX" }, secret) ?? "";
    expect(problem).not.toContain("s3cret");
  });
});
