// Validate GLB files with the Khronos glTF-Validator (npm `gltf-validator`).
//   node gltf_validate.mjs FILE.glb ...   -> one JSON line: {file: {numErrors, ..., messages}}
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeRoot = process.env.SPLATSTUDIO_NODE_DIR || path.join(here, "..", "..", ".node");
const require = createRequire(path.join(nodeRoot, "package.json"));
const validator = require("gltf-validator");
const out = {};
for (const file of process.argv.slice(2)) {
  const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), { maxIssues: 200 });
  out[file] = report.issues;
}
console.log(JSON.stringify(out));
