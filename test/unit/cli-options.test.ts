import { describe, expect, it } from "vitest";

import { buildProgram, expandOptionPrefixes } from "../../src/cli/program.js";

/**
 * IoTa's CLI (argparse) accepts a long option shortened to any prefix unique among the
 * command's options. Operators' scripts use the abbreviations IoTa's documentation shows; an
 * option added later must never make one of them ambiguous, and this list says so.
 */
const IOTA_ABBREVIATIONS: [command: string, given: string, meant: string][] = [
  ["pd get", "--prop", "--properties"],
  ["pd get", "--pu", "--puid"],
  ["pd ls", "--prop", "--properties"],
  ["pd ls", "--pl", "--plain"],
  ["pd ls", "--so", "--source"],
  ["pd lum", "--prop", "--properties"],
  ["pd lum", "--pl", "--plain"],
  ["pd lum", "--so", "--source"],
  ["pd up", "--pu", "--puid"],
  ["pd rm", "--pu", "--puid"],
  ["ld get", "--prop", "--properties"],
  ["ld ls", "--prop", "--properties"],
  ["ld cpd", "--pu", "--puid"],
  ["map start", "--pu", "--puid"],
  ["map end", "--pu", "--puid"],
  ["map ls", "--pu", "--puid"],
  ["map toggle", "--pu", "--puid"],
  ["map toggle", "--en", "--enable"],
  ["map toggle", "--dis", "--disable"],
];

describe("long option prefixes, as argparse", () => {
  it.each(IOTA_ABBREVIATIONS)("%s %s means %s", async (command, given, meant) => {
    const program = await buildProgram("all");
    const words = command.split(" ");
    expect(expandOptionPrefixes(program, [...words, given, "7"])).toEqual([...words, meant, "7"]);
  });

  it("keeps exact names, values and what follows --; expands --opt=value", async () => {
    const program = await buildProgram("all");
    expect(expandOptionPrefixes(program, ["pd", "ls", "--so=ydoc", "--pl"])).toEqual([
      "pd",
      "ls",
      "--source=ydoc",
      "--plain",
    ]);
    // A value that looks like an option prefix is a value.
    expect(expandOptionPrefixes(program, ["pd", "ls", "--source", "--pl"])).toEqual([
      "pd",
      "ls",
      "--source",
      "--pl",
    ]);
    expect(expandOptionPrefixes(program, ["pd", "get", "--", "--pu"])).toEqual([
      "pd",
      "get",
      "--",
      "--pu",
    ]);
    expect(expandOptionPrefixes(program, ["pd", "get", "--bogus"])).toEqual([
      "pd",
      "get",
      "--bogus",
    ]);
    expect(expandOptionPrefixes(program, ["pd", "get", "--he"])).toEqual(["pd", "get", "--help"]);
  });

  it("refuses an ambiguous prefix as a usage error naming the candidates", async () => {
    const program = await buildProgram("all");
    expect(() => expandOptionPrefixes(program, ["pd", "ls", "--p"])).toThrow(
      "ambiguous option: --p could match --plain, --properties",
    );
    expect(() => expandOptionPrefixes(program, ["pd", "get", "--p"])).toThrow(
      "ambiguous option: --p could match --puid, --properties",
    );
  });
});
