import { z } from "zod";

import { text } from "./devices.js";

/** Bodies of the user endpoints. */

/** A user name: Basic credentials split on the first colon, so it cannot contain one. */
export const username = text
  .min(1, "must not be empty")
  .max(256, "must be at most 256 characters")
  .refine((v) => !v.includes(":"), "must not contain ':'");

export const password = z
  .string()
  .min(1, "must not be empty")
  .max(1024, "must be at most 1024 characters");

export const userOutput = z
  .object({
    uid: z.number().int(),
    username: z.string(),
    valid: z.boolean().meta({ description: "false: disabled, cannot log in or use tokens." }),
    read_only: z.boolean().meta({ description: "true: may only read and change their password." }),
  })
  .meta({ id: "User" });

export const userInput = z
  .object({
    username,
    password,
    read_only: z.boolean().optional().meta({ description: "Default true, as IoTa." }),
    valid: z.boolean().optional().meta({ description: "Default true." }),
  })
  .meta({ id: "UserInput" });

export const userPatchInput = z
  .object({
    password: password.optional(),
    read_only: z.boolean().optional(),
    valid: z.boolean().optional(),
  })
  .meta({ id: "UserPatch" });
