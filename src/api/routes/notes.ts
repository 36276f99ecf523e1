import { z } from "zod";

import { createNote, deleteNote, listNotes, updateNote } from "../../db/repositories/notes.js";
import { notFound } from "../errors.js";
import { NO_CONTENT, ok, route, type Route } from "../route.js";
import { failure, json, noContentResponse, nullBody } from "../schemas/common.js";
import { noteInput, noteOutput } from "../schemas/devices.js";
import { pageQuery, uidPath } from "../schemas/params.js";

const tags = ["physical devices"];

function noteBody(note: { uid: number; ts: string; note: string }) {
  return { uid: note.uid, ts: note.ts, note: note.note };
}

/** IoTa's device note endpoints. They come before /physical/devices/{uid} when mounted. */
export function noteRoutes(): Route[] {
  return [
    route({
      method: "post",
      path: "/physical/devices/notes/{uid}",
      summary: "Add a note to a physical device",
      description: "Only `note` is used. Answers 201 with `null`, as IoTa.",
      tags,
      access: "admin",
      params: uidPath,
      body: noteInput,
      responses: {
        "201": json("Created.", nullBody),
        "404": failure("Physical device not found."),
      },
      handler: async ({ db, params, body }) => {
        await createNote(db, params.uid, body.note);
        return { status: 201, body: null };
      },
    }),
    route({
      method: "get",
      path: "/physical/devices/notes/{uid}",
      summary: "The notes of a physical device, oldest first",
      description: "An unknown device has no notes: `[]`.",
      tags,
      access: "read",
      params: uidPath,
      query: z.object(pageQuery),
      responses: { "200": json("Notes.", z.array(noteOutput)) },
      handler: async ({ db, params, query }) => {
        const notes = await listNotes(db, params.uid, {
          ...(query.limit !== undefined ? { limit: query.limit } : {}),
          ...(query.offset !== undefined ? { offset: query.offset } : {}),
        });
        return ok(notes.map(noteBody));
      },
    }),
    route({
      method: "patch",
      path: "/physical/devices/notes/",
      summary: "Change a note's text (and its time, when given)",
      tags,
      access: "admin",
      body: noteInput,
      responses: {
        "200": json("Changed; `null`, as IoTa.", nullBody),
        "404": failure("Note not found."),
      },
      handler: async ({ db, body }) => {
        if (body.uid === undefined || body.uid === null) {
          throw notFound("Note not found");
        }
        const updated = await updateNote(db, body.uid, {
          note: body.note,
          ...(body.ts ? { ts: body.ts } : {}),
        });
        if (!updated) {
          throw notFound("Note not found");
        }
        return ok(null);
      },
    }),
    route({
      method: "delete",
      path: "/physical/devices/notes/{uid}",
      summary: "Delete a note (204 even when there is none, as IoTa)",
      tags,
      access: "admin",
      params: uidPath,
      responses: { "204": noContentResponse },
      handler: async ({ db, params }) => {
        await deleteNote(db, params.uid);
        return NO_CONTENT;
      },
    }),
  ];
}
