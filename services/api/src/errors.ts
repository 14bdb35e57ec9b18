// Errors the API answers with: each maps to one HTTP status and a stable code, rendered as
// {"error":{"code","message",...details}}.

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  body(): { error: Record<string, unknown> } {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}

export const notFound = (name: string) => new ApiError(404, "not_found", `service "${name}" does not exist`);

/** `heldBy` holds the domain's claim, or its record lists the domain (replicas give it the domain, and the claim). */
export const domainConflict = (domain: string, heldBy: string, by: "claim" | "record") =>
  new ApiError(409, "domain_conflict", `domain "${domain}" ${by === "claim" ? "is held" : "is listed"} by service "${heldBy}"`, { domain, heldBy });

/** `heldBy` holds the claim but its record does not list the domain (yet): a PUT on its way, or one that failed half way. */
export const pendingClaim = (domain: string, heldBy: string, lapsesAt: Date) =>
  new ApiError(
    409,
    "domain_conflict",
    `domain "${domain}" is claimed by service "${heldBy}", whose record does not list it (yet): a write of "${heldBy}" in progress, or one that failed half way; the claim lapses at ${lapsesAt.toISOString()} at the latest, unless "${heldBy}" is written with the domain`,
    { domain, heldBy, claimLapsesAt: lapsesAt.toISOString() },
  );

export const revisionMismatch = (expected: readonly number[], current: number | undefined) => {
  const wanted = expected.length === 1 ? `revision ${expected[0]}` : `one of revisions ${expected.join(", ")}`;
  return new ApiError(
    412,
    "revision_mismatch",
    current === undefined
      ? `If-Match expected ${wanted}, but the service does not exist`
      : `If-Match expected ${wanted}, but the stored revision is ${current}`,
    { currentRevision: current ?? null },
  );
};

export const alreadyExists = (current: number | undefined) =>
  new ApiError(412, "revision_mismatch", "If-None-Match: * but the service exists", { currentRevision: current ?? null });

export const unavailable = (reason: string) =>
  new ApiError(503, "registry_unavailable", `the registry (NATS) is unavailable: ${reason}`);
