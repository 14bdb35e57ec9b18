// Small statistics helpers for benchmark figures.

export interface Distribution {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function distribution(samples: number[]): Distribution {
  if (samples.length === 0) throw new Error("no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return {
    n: sorted.length,
    p50: at(50),
    p95: at(95),
    p99: at(99),
    max: sorted[sorted.length - 1]!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

/** A formatter that writes "—" for a figure that was not measured (NaN). */
const figure = (format: (value: number) => string) => (value: number) => (Number.isNaN(value) ? "—" : format(value));

export const ms = figure((value) => (value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0)));
export const seconds = figure((value) => value.toFixed(2));
export const mib = figure((bytes) => (bytes / (1024 * 1024)).toFixed(1));
export const kib = figure((bytes) => (bytes / 1024).toFixed(1));
