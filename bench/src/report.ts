// The benchmark report: sections of Markdown, written to bench/RESULTS.md with the command and
// the machine it ran on.
import { writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { findTool } from "@envoyage/test-support";

const run = promisify(execFile);

export interface Section {
  title: string;
  /** What the benchmark does and how to read it. */
  description: string;
  table: { header: string[]; rows: (string | number)[][] };
  notes?: string[];
  /** Targets and whether they hold. */
  targets?: { target: string; measured: string; met: boolean }[];
}

async function version(command: string, args: string[], pattern: RegExp): Promise<string> {
  try {
    const { stdout, stderr } = await run(command, args);
    return pattern.exec(stdout + stderr)?.[1] ?? "unknown";
  } catch {
    return "not available";
  }
}

async function machine(): Promise<string[]> {
  const cpu = cpus();
  return [
    `- CPU: ${cpu.length} × ${cpu[0]?.model ?? "unknown"}`,
    `- memory: ${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    `- Node.js ${process.versions.node}, Envoy ${await version(findTool("envoy"), ["--version"], /\/(\d+\.\d+\.\d+)\//)}, ` +
      `nats-server ${await version(findTool("nats-server"), ["--version"], /v(\d+\.\d+\.\d+)/)}, ` +
      `Go ${await version("go", ["version"], /go(\d+\.\d+(\.\d+)?)/)}`,
  ];
}

function render(section: Section): string {
  const lines = [`## ${section.title}`, "", section.description, ""];
  lines.push(`| ${section.table.header.join(" | ")} |`, `|${section.table.header.map(() => "---").join("|")}|`);
  for (const row of section.table.rows) lines.push(`| ${row.join(" | ")} |`);
  if (section.targets?.length) {
    lines.push("", "| target | measured | met |", "|---|---|---|");
    for (const t of section.targets) lines.push(`| ${t.target} | ${t.measured} | ${t.met ? "yes" : "**no**"} |`);
  }
  if (section.notes?.length) lines.push("", ...section.notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

export async function writeResults(file: URL, command: string, startedAt: Date, sections: Section[], preamble: string[]): Promise<void> {
  const text = [
    "# Benchmark results",
    "",
    `Command: \`${command}\` — run ${startedAt.toISOString()} (${((Date.now() - startedAt.getTime()) / 60_000).toFixed(1)} min).`,
    "",
    "Machine:",
    ...(await machine()),
    "",
    ...preamble,
    "",
    ...sections.map(render).flatMap((s) => [s, ""]),
  ].join("\n");
  await writeFile(file, text);
}
