// npm run bench [-- --quick] [-- --only name,name]: runs the benchmarks and writes bench/RESULTS.md.
import { parseArgs } from "node:util";
import { api } from "./api.js";
import { burst } from "./burst.js";
import { fanout } from "./fanout.js";
import { propagation } from "./propagation.js";
import { scale } from "./scale.js";
import { soak } from "./soak.js";
import { writeResults, type Section } from "./report.js";

const SUITES: Record<string, (quick: boolean) => Promise<Section | Section[]>> = {
  propagation,
  burst,
  fanout,
  scale,
  api,
  soak,
};

const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, only: { type: "string" } } });
const quick = values.quick ?? false;
const only = values.only?.split(",") ?? Object.keys(SUITES);
for (const name of only) if (!SUITES[name]) throw new Error(`unknown benchmark "${name}"; known: ${Object.keys(SUITES).join(", ")}`);

const startedAt = new Date();
const command = `npm run bench${quick ? " -- --quick" : ""}${values.only ? ` -- --only ${values.only}` : ""}`;
const sections: Section[] = [];
// Written after every suite, so a suite that fails keeps the figures of those before it.
const write = () =>
  writeResults(new URL("../../RESULTS.md", import.meta.url), command, startedAt, sections, [
    "Benchmarks are not tests: they measure, on a shared and noisy machine, so peers and Envoyage run in the same run and ratios matter more than absolute figures.",
  ]);
for (const name of only) {
  console.log(`[bench] ${name}${quick ? " (quick)" : ""}`);
  const result = await SUITES[name]!(quick);
  sections.push(...(Array.isArray(result) ? result : [result]));
  await write();
}
console.log("[bench] wrote bench/RESULTS.md");
process.exit(0);
