// Packs Envoy reports, each already JSON, into EnvoyPage bodies of at most `maxBytes` bytes of
// UTF-8, keeping their order. A report larger than a page on its own gets a page of its own.
const PREFIX = '{"envoys":[';
const SUFFIX = "]}";
const FRAME = PREFIX.length + SUFFIX.length;

export function packPages(reports: readonly string[], maxBytes: number): string[] {
  const pages: string[] = [];
  let current: string[] = [];
  let size = FRAME;
  for (const report of reports) {
    const bytes = Buffer.byteLength(report);
    if (current.length > 0 && size + 1 + bytes > maxBytes) {
      pages.push(PREFIX + current.join(",") + SUFFIX);
      current = [];
      size = FRAME;
    }
    size += bytes + (current.length > 0 ? 1 : 0);
    current.push(report);
  }
  if (current.length > 0) pages.push(PREFIX + current.join(",") + SUFFIX);
  return pages;
}
