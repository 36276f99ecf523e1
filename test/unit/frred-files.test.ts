import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { WriterDeps } from "../../src/delivery/ports.js";
import { ConfigError, loadConfig } from "../../src/core/config.js";
import { TransientError } from "../../src/core/errors.js";
import { messageKey, type NormalisedMessage } from "../../src/core/message.js";
import {
  FrredFiles,
  messageDirectoryName,
  type FrredItem,
} from "../../src/delivery/frred/frred-files.js";
import { createFrredWriter } from "../../src/delivery/frred/frred-writer.js";

let base: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "frred-unit-"));
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

function item(overrides: Partial<NormalisedMessage> = {}): FrredItem {
  const message: NormalisedMessage = {
    broker_correlation_id: randomUUID(),
    p_uid: 301,
    timestamp: "2023-01-30T06:21:56Z",
    timeseries: [{ name: "battery (v)", value: 4.16 }],
    l_uid: 276,
    ...overrides,
  };
  return { message, key: messageKey(message) };
}

describe("FrredFiles", () => {
  it("writes one directory per message with one file holding the message as received", async () => {
    const files = new FrredFiles({ dir: base });
    const it1 = item({ extra_key: { kept: true } } as Partial<NormalisedMessage>);
    expect(await files.write([it1])).toEqual(["written"]);

    const cid = it1.message.broker_correlation_id;
    const name = `${cid}_${it1.key.replace(/-/g, "").slice(0, 8)}`;
    expect(messageDirectoryName(it1)).toBe(name);
    expect(name).toMatch(/^[0-9a-f-]{36}_[0-9a-f]{8}$/);
    expect(await readdir(base)).toEqual([name]);
    expect(await readdir(join(base, name))).toEqual([`${cid}.json`]);

    const text = await readFile(join(base, name, `${cid}.json`), "utf8");
    expect(text).toBe(JSON.stringify(it1.message));
    expect(text).not.toContain("\n");
    expect(JSON.parse(text)).toEqual({ ...it1.message });
    expect(JSON.parse(text)).toMatchObject({ p_uid: 301, l_uid: 276, extra_key: { kept: true } });

    expect((await stat(join(base, name))).mode & 0o777).toBe(0o755);
    expect((await stat(join(base, name, `${cid}.json`))).mode & 0o777).toBe(0o644);
  });

  it("does not rewrite a message that is already there, and does not fail", async () => {
    const files = new FrredFiles({ dir: base });
    const m = item();
    await files.write([m]);
    const file = join(base, messageDirectoryName(m), `${m.message.broker_correlation_id}.json`);
    const before = await stat(file);
    const dirBefore = await stat(join(base, messageDirectoryName(m)));
    await new Promise((r) => setTimeout(r, 20));

    expect(await files.write([m])).toEqual(["exists"]);
    const after = await stat(file);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect((await stat(join(base, messageDirectoryName(m)))).ino).toBe(dirBefore.ino);
    expect(await readdir(base)).toEqual([messageDirectoryName(m)]);
  });

  it("writes a message repeated within one batch once and reports it for each", async () => {
    const files = new FrredFiles({ dir: base });
    const m = item();
    expect(await files.write([m, m])).toEqual(["written", "written"]);
    expect(await readdir(base)).toHaveLength(1);
  });

  it("keeps every message of one correlation id", async () => {
    const files = new FrredFiles({ dir: base });
    const cid = randomUUID();
    const a = item({ broker_correlation_id: cid, p_uid: 1 });
    const b = item({ broker_correlation_id: cid, p_uid: 2 });
    expect(await files.write([a, b])).toEqual(["written", "written"]);
    const dirs = (await readdir(base)).sort();
    expect(dirs).toHaveLength(2);
    expect(dirs.every((d) => d.startsWith(`${cid}_`))).toBe(true);
    const contents = await Promise.all(
      dirs.map((d) => readFile(join(base, d, `${cid}.json`), "utf8")),
    );
    expect(contents.map((c) => (JSON.parse(c) as { p_uid: number }).p_uid).sort()).toEqual([1, 2]);
  });

  it("writes many messages in one call and leaves no temporary directories", async () => {
    const files = new FrredFiles({ dir: base, concurrency: 4 });
    const items = Array.from({ length: 50 }, () => item());
    expect(new Set(await files.write(items))).toEqual(new Set(["written"]));
    const entries = await readdir(base);
    expect(entries).toHaveLength(50);
    expect(entries.some((e) => e.startsWith(".tmp-"))).toBe(false);
  });

  it("answers in input order when the directories are shared among threads, new and existing mixed", async () => {
    const files = new FrredFiles({ dir: base, concurrency: 3 });
    const items = Array.from({ length: 20 }, () => item());
    const earlier = items.filter((_, i) => i % 3 === 0);
    await files.write(earlier);
    const results = await files.write(items);
    expect(results).toEqual(items.map((_, i) => (i % 3 === 0 ? "exists" : "written")));
    expect((await readdir(base)).sort()).toEqual(items.map(messageDirectoryName).sort());
    await files.close();
  });

  it("sets the modes itself when the process umask would strip them", async () => {
    const previous = process.umask(0o077);
    try {
      // A new writer's threads read the umask when they start.
      const files = new FrredFiles({ dir: base });
      const m = item();
      expect(await files.write([m])).toEqual(["written"]);
      const dir = join(base, messageDirectoryName(m));
      expect((await stat(dir)).mode & 0o777).toBe(0o755);
      expect((await stat(join(dir, `${m.message.broker_correlation_id}.json`))).mode & 0o777).toBe(
        0o644,
      );
      await files.close();
    } finally {
      process.umask(previous);
    }
  });

  it("fails transiently once closed", async () => {
    const files = new FrredFiles({ dir: base });
    expect(await files.write([item()])).toEqual(["written"]);
    await files.close();
    await expect(files.write([item()])).rejects.toBeInstanceOf(TransientError);
    expect(await readdir(base)).toHaveLength(1);
  });

  it("treats a missing base directory as transient and does not create it", async () => {
    const missing = join(base, "not-mounted");
    const files = new FrredFiles({ dir: missing });
    expect(await files.checkDirectory()).toMatchObject({ usable: false });
    await expect(files.write([item()])).rejects.toBeInstanceOf(TransientError);
    await expect(stat(missing)).rejects.toMatchObject({ code: "ENOENT" });

    await mkdir(missing);
    expect(await files.checkDirectory()).toEqual({ usable: true });
    expect(await files.write([item()])).toEqual(["written"]);
  });

  it("treats an unwritable location as transient (base below a regular file)", async () => {
    const blocker = join(base, "a-file");
    await writeFile(blocker, "x");
    const files = new FrredFiles({ dir: join(blocker, "raw_data") });
    expect(await files.checkDirectory()).toMatchObject({ usable: false });
    const error = await files.write([item()]).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(TransientError);
    expect(String((error as Error).message)).toContain("raw_data");
  });

  it("treats a base that is a regular file as transient", async () => {
    const file = join(base, "raw_data");
    await writeFile(file, "x");
    const files = new FrredFiles({ dir: file });
    await expect(files.write([item()])).rejects.toBeInstanceOf(TransientError);
  });

  it("removes only stale temporary directories", async () => {
    const files = new FrredFiles({ dir: base });
    const stale = join(base, ".tmp-old-abc");
    const fresh = join(base, ".tmp-new-def");
    await mkdir(stale);
    await writeFile(join(stale, "x.json"), "{}");
    await mkdir(fresh);
    const old = new Date(Date.now() - 2 * 3_600_000);
    await utimes(stale, old, old);
    const kept = item();
    await files.write([kept]);

    expect(await files.removeStaleTemporaries()).toBe(1);
    expect((await readdir(base)).sort()).toEqual(
      [".tmp-new-def", messageDirectoryName(kept)].sort(),
    );
  });
});

describe("createFrredWriter", () => {
  it("refuses to start without FRRED_DIR or DATABOLT_SHARED_DIR, naming both", () => {
    const deps = { config: loadConfig({}) } as WriterDeps;
    expect(() => createFrredWriter(deps)).toThrow(ConfigError);
    expect(() => createFrredWriter(deps)).toThrow(/FRRED_DIR.*DATABOLT_SHARED_DIR/);
  });

  it("uses $DATABOLT_SHARED_DIR/raw_data when FRRED_DIR is unset", () => {
    expect(loadConfig({ DATABOLT_SHARED_DIR: "/srv/databolt" }).frred.dir).toBe(
      "/srv/databolt/raw_data",
    );
  });
});
