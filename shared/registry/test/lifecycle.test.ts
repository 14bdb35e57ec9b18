import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";

describe("requireSupportedNode", () => {
  const check = (version: string) =>
    spawnSync(process.execPath, ["--input-type=module", "-e", `(await import(${JSON.stringify(new URL("../src/lifecycle.js", import.meta.url).href)})).requireSupportedNode("envoyage-test", ${JSON.stringify(version)}); console.log("started")`], { encoding: "utf8" });

  it("stops a process on a Node older than 26 with one line naming the cause, as a malformed setting does", () => {
    const old = check("20.20.2");
    assert.equal(old.status, 2);
    assert.equal(old.stdout, "");
    assert.equal(old.stderr, 'envoyage-test: needs Node.js 26 or later, this is 20.20.2; make install puts it in .tools/bin (README, "Two commands")\n');
  });

  it("lets Node 26 and later start", () => {
    for (const version of ["26.0.0", "27.1.0"]) assert.equal(check(version).stdout, "started\n", version);
  });
});
