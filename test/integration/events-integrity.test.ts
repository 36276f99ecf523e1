import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Db } from "../../src/db/database.js";
import {
  createLogicalDevice,
  updateLogicalDevice,
} from "../../src/db/repositories/logical-devices.js";
import { createNote } from "../../src/db/repositories/notes.js";
import { createPhysicalDevice } from "../../src/db/repositories/physical-devices.js";
import {
  createUser,
  deleteUser,
  revokeTokens,
  setPassword,
  updateUserFlags,
} from "../../src/db/repositories/users.js";
import { withActor } from "../../src/events/actor.js";
import type { RegistryEvent } from "../../src/events/event.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { eventsOf as eventsOfIn, summary } from "../helpers/events.js";

let testDb: TestDatabase;
let db: Db;

beforeAll(async () => {
  testDb = await createTestDatabase();
  db = testDb.handle.db;
});

afterAll(async () => {
  await testDb.drop();
});

/** Runs `fn`, then returns the events it caused (in id order). */
const eventsOf = (fn: () => Promise<unknown>): Promise<RegistryEvent[]> => eventsOfIn(db, fn);

describe("registry events", () => {
  it("never carry a password, salt or token, only the names of the columns that changed", async () => {
    const secrets = [
      "s4lt-0123456789abcdef",
      "h4sh-0123456789abcdef",
      "plaintext-token-0123456789",
    ];
    const generations: string[] = [];
    const remember = async (): Promise<void> => {
      const { rows } = await sql<{
        g: string;
      }>`select token_generation::text as g from users where username = 'carol'`.execute(db);
      generations.push(...rows.map((r) => r.g));
    };
    const events = await eventsOf(async () => {
      const user = await withActor(db, "cli:root", (trx) =>
        createUser(trx, {
          username: "carol",
          salt: secrets[0]!,
          passwordHash: secrets[1]!,
          valid: true,
          readOnly: true,
        }),
      );
      await setPassword(db, user.uid, "n3w-" + secrets[0]!, "n3w-" + secrets[1]!);
      await updateUserFlags(db, "carol", { readOnly: false });
      await remember();
      await revokeTokens(db, user.uid);
      await remember();
      // IoTa's own tooling writes a plaintext token straight into the table.
      await sql`update users set auth_token = ${secrets[2]!} where uid = ${user.uid}`.execute(db);
      await remember();
      await deleteUser(db, "carol");
    });
    expect(summary(events)).toEqual([
      "user.create cli:root",
      "user.update database",
      "user.update database",
      "user.update database",
      "user.update database",
      "user.delete database",
    ]);
    // A new password also revokes the user's tokens (token_generation moves on): named, not shown.
    expect(events[1]!.data.changed).toEqual(["password", "salt", "token_generation"]);
    expect(events[1]!.data.before).toEqual(events[1]!.data.after);
    expect(events[2]!.data.changed).toEqual(["read_only"]);
    expect(events[3]!.data.changed).toEqual(["token_generation"]);
    expect(Object.keys(events[0]!.data.after!).sort()).toEqual([
      "read_only",
      "uid",
      "username",
      "valid",
    ]);
    const text = JSON.stringify(events);
    expect(generations).toHaveLength(3);
    for (const secret of [...secrets, ...generations]) {
      expect(text).not.toContain(secret);
    }
  });

  it("number events in commit order, write none for a rolled-back change, and record TRUNCATE", async () => {
    const a = await createLogicalDevice(db, { name: "order-a" });
    const b = await createLogicalDevice(db, { name: "order-b" });
    const first = await testDb.handle.pool.connect();
    try {
      const events = await eventsOf(async () => {
        // The first transaction changes its row first but commits last.
        await first.query("begin");
        await first.query("update logical_devices set name = 'order-a2' where uid = $1", [a.uid]);
        await updateLogicalDevice(db, b.uid, { name: "order-b2" });
        await first.query("commit");
        await db
          .transaction()
          .execute(async (trx) => {
            await updateLogicalDevice(trx, a.uid, { name: "never" });
            throw new Error("roll back");
          })
          .catch(() => undefined);
      });
      expect(events.map((e) => e.data.after?.name)).toEqual(["order-b2", "order-a2"]);
    } finally {
      first.release();
    }

    const truncated = await eventsOf(() => sql`truncate device_notes`.execute(db));
    expect(truncated).toEqual([]);
    const pd = await createPhysicalDevice(db, { source_name: "ttn", name: "pd-3" });
    await createNote(db, pd.uid, "one");
    await createNote(db, pd.uid, "two");
    const gone = await eventsOf(() => sql`truncate device_notes`.execute(db));
    expect(gone.map((e) => `${e.entity}.${e.operation} ${String(e.data.before?.note)}`)).toEqual([
      "note.delete one",
      "note.delete two",
    ]);
  });
});
