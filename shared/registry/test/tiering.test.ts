import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const TIERING = fileURLToPath(new URL("../src/tiering.js", import.meta.url));
/** V8's OptimizationStatus::kOptimized. */
const OPTIMIZED = 1 << 4;

/**
 * Whether V8 has compiled a function called once per "change" within 160 calls, in a fresh
 * process, with or without compileHotPathsSooner (V8's default waits for 400).
 */
function compiledWithin160Calls(lowered: boolean): boolean {
  const script = `
    ${lowered ? `require(${JSON.stringify(TIERING)}).compileHotPathsSooner();` : ""}
    function change(record) { return record.port + record.domains.length * 2; }
    for (let i = 0; i < 60; i++) change({ port: i, domains: ["a"] });
    // Compiled on a background thread and installed on a later call: call again now and then.
    let calls = 0;
    const poll = setInterval(() => {
      change({ port: calls, domains: ["b"] });
      const compiled = (%GetOptimizationStatus(change) & ${OPTIMIZED}) !== 0;
      if (compiled || ++calls === 100) {
        clearInterval(poll);
        console.log(compiled);
      }
    }, 20);`;
  return execFileSync(process.execPath, ["--allow-natives-syntax", "-e", script], { encoding: "utf8" }).trim() === "true";
}

describe("compileHotPathsSooner", () => {
  it("has V8 compile a function called once per change within 160 calls, where its defaults wait for 400", () => {
    assert.equal(compiledWithin160Calls(false), false, "V8's defaults compile it as soon: the lowered thresholds are moot");
    assert.equal(compiledWithin160Calls(true), true, "still not compiled after 160 calls");
  });
});
