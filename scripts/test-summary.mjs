#!/usr/bin/env node
// Reads vitest's JSON report and prints one line, "N passed, N failed" (plus ", N skipped" when
// some tests were skipped or marked todo). Exits 1 when anything failed or the report is missing
// or unreadable, 0 otherwise. Plain Node, no dependencies.
//
// Usage: node scripts/test-summary.mjs [test-results/vitest.json]
//
// N passed and N failed are vitest's numPassedTests and numFailedTests, with two additions so the
// line never says "0 failed" for a run that did not pass: a test file that fails before any of its
// tests runs (an import error, a failing beforeAll) counts as one failure, and a run vitest
// reports as unsuccessful with no failure counted anywhere (an unhandled error, a configuration
// error, no test files, a missing report) counts as one failure.

import { readFileSync } from "node:fs";
import process from "node:process";

const out = (line) => process.stdout.write(`${line}\n`);
const err = (line) => process.stderr.write(`${line}\n`);

const file = process.argv[2] ?? "test-results/vitest.json";

function count(value) {
  return Number.isInteger(value) && value > 0 ? value : 0;
}

let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (error) {
  err(`test-summary: cannot read ${file}: ${error instanceof Error ? error.message : error}`);
  report = {};
}

const passed = count(report.numPassedTests);
let failed = count(report.numFailedTests);

const brokenFiles = (Array.isArray(report.testResults) ? report.testResults : []).filter(
  (result) =>
    result?.status === "failed" &&
    !(Array.isArray(result.assertionResults) ? result.assertionResults : []).some(
      (a) => a?.status === "failed",
    ),
);
for (const result of brokenFiles) {
  const reason = String(result.message ?? "").split("\n")[0] || "no test in it ran";
  err(`test-summary: test file failed: ${result.name}: ${reason}`);
}
failed += brokenFiles.length;

// A run vitest itself calls unsuccessful (an unhandled error, a bad configuration, no test files,
// an unreadable report) counts as at least one failure.
if (failed === 0 && report.success !== true) {
  err(
    "test-summary: the test run did not succeed (see vitest's errors above); counting it as 1 failure",
  );
  failed = 1;
}

let skipped = count(report.numPendingTests) + count(report.numTodoTests);
if (Number.isInteger(report.numTotalTests)) {
  skipped = Math.min(
    skipped,
    Math.max(0, report.numTotalTests - passed - count(report.numFailedTests)),
  );
}

out(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
// exitCode rather than exit(): lets the line above reach a pipe before the process ends.
process.exitCode = failed > 0 ? 1 : 0;
