import { Option, type Command } from "commander";

import { addUser, changePassword, issueToken, replaceTokens } from "../../api/credentials.js";
import { apiSettings } from "../../api/settings.js";
import { loadConfig } from "../../core/config.js";
import type { Db } from "../../db/database.js";
import { RegistryError } from "../../db/repositories/registry-error.js";
import {
  deleteUser,
  getUser,
  listUsers,
  updateUserFlags,
  type User,
} from "../../db/repositories/users.js";
import { cliActor, withActor } from "../../events/actor.js";
import { InputError, notFoundNote, printJson, UsageError, withDatabase } from "../context.js";

/**
 * `broker users …`: IoTa broker-cli's user commands and flags. Tokens are stored only as hashes,
 * so `users token` cannot show a user's existing token: it issues a new one and says so.
 */

async function existing(db: Db, username: string): Promise<User> {
  const user = await getUser(db, username);
  if (!user) {
    throw new RegistryError("not_found", `user ${JSON.stringify(username)} not found`);
  }
  return user;
}

/** TOKEN_TTL, validated as `broker run api` validates it. */
function tokenTtl(): number | undefined {
  return apiSettings(loadConfig()).tokenTtlSeconds;
}

function requirePassword(password: string | undefined): string {
  if (password === undefined || password === "") {
    throw new InputError("give the new password with -p/--password");
  }
  return password;
}

export function registerUsersCommands(program: Command): void {
  const users = program.command("users").description("API user operations");

  users
    .command("add")
    .description("add a user (read-only unless -a); prints nothing")
    .requiredOption("-u, --username <name>", "user name")
    .requiredOption("-p, --password <password>", "password")
    .option("-d, --disabled", "create the user disabled")
    .option("-a, --admin", "the user may change things (not read-only)")
    .action(
      async (opts: { username: string; password: string; disabled?: boolean; admin?: boolean }) => {
        if (opts.username === "" || opts.username.includes(":")) {
          throw new UsageError("the user name must be non-empty and must not contain ':'");
        }
        await withDatabase((db) =>
          withActor(db, cliActor(), (trx) =>
            addUser(trx, {
              username: opts.username,
              password: requirePassword(opts.password),
              valid: !opts.disabled,
              readOnly: !opts.admin,
            }),
          ),
        );
      },
    );

  users
    .command("rm")
    .description("remove a user and their tokens")
    .requiredOption("-u, --username <name>", "user name")
    .action(async (opts: { username: string }) => {
      const removed = await withDatabase((db) =>
        withActor(db, cliActor(), (trx) => deleteUser(trx, opts.username)),
      );
      if (!removed) {
        // IoTa said nothing and exited 0.
        notFoundNote(`user ${JSON.stringify(opts.username)}`);
      }
    });

  users
    .command("token")
    .description(
      "print a new token for the user (tokens are stored hashed: an existing one cannot be shown)",
    )
    .requiredOption("-u, --username <name>", "user name")
    .option("--refresh", "revoke every existing token of the user first")
    .addOption(new Option("--disable", "disable the user").conflicts("enable"))
    .addOption(new Option("--enable", "enable the user"))
    .action(
      async (opts: {
        username: string;
        refresh?: boolean;
        disable?: boolean;
        enable?: boolean;
      }) => {
        const ttl = tokenTtl();
        const { token, user } = await withDatabase((db) =>
          withActor(db, cliActor(), async (trx) => {
            let user = await existing(trx, opts.username);
            if (opts.disable || opts.enable) {
              user = (await updateUserFlags(trx, user.username, { valid: !!opts.enable })) ?? user;
            }
            if (opts.disable) {
              // A disabled user gets no new token; disabling revoked the ones out there.
              return { token: undefined, user };
            }
            const token = opts.refresh
              ? await replaceTokens(trx, user, ttl)
              : await issueToken(trx, user, ttl);
            return { token, user };
          }),
        );
        if (token === undefined) {
          process.stderr.write(
            `user ${user.username} disabled and their tokens revoked; no token issued\n`,
          );
          return;
        }
        if (!opts.refresh) {
          process.stderr.write(
            "note: tokens are stored hashed, so the existing ones cannot be shown; issued a new token (earlier tokens stay valid; --refresh revokes them)\n",
          );
        }
        if (!user.valid) {
          process.stderr.write(
            `note: user ${user.username} is disabled; the token works once enabled\n`,
          );
        }
        process.stdout.write(`${token}\n`);
      },
    );

  users
    .command("chng")
    .description("change a user's password (revokes their tokens)")
    .requiredOption("-u, --username <name>", "user name")
    .option("-p, --password <password>", "the new password")
    .action(async (opts: { username: string; password?: string }) => {
      const password = requirePassword(opts.password);
      await withDatabase((db) =>
        withActor(db, cliActor(), async (trx) => {
          const user = await getUser(trx, opts.username);
          if (!user) {
            // IoTa said nothing and exited 0.
            notFoundNote(`user ${JSON.stringify(opts.username)}`);
            return;
          }
          await changePassword(trx, user, password);
        }),
      );
    });

  users
    .command("ls")
    .description("list user names as a JSON array (uid order)")
    .option("--long", "list each user's uid, username, valid and read_only instead")
    .action(async (opts: { long?: boolean }) => {
      const all = await withDatabase((db) => listUsers(db));
      printJson(opts.long ? all : all.map((u) => u.username));
    });
}
