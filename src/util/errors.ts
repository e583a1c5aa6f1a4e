/**
 * Every failure the user sees says what failed, why, and what to do about it.
 * Code throws TcelabError (or a subclass); the CLI prints it without a stack trace.
 */
export class TcelabError extends Error {
  readonly what: string;
  readonly why: string;
  readonly hint: string | undefined;

  constructor(what: string, why: string, hint?: string, options?: { cause?: unknown }) {
    super(`${what}: ${why}`, options);
    this.name = 'TcelabError';
    this.what = what;
    this.why = why;
    this.hint = hint;
  }

  /** Multi-line text for a person: what/why, then the hint. */
  describe(): string {
    return this.hint ? `${this.message}\n  what to do: ${this.hint}` : this.message;
  }
}

/** Bad user input (profile, scenario, flag): names the offending field. */
export class InputError extends TcelabError {
  readonly field: string;
  constructor(source: string, field: string, why: string, hint?: string) {
    super(`${source}: ${field}`, why, hint);
    this.name = 'InputError';
    this.field = field;
  }
}

export function describeError(err: unknown): string {
  if (err instanceof TcelabError) return err.describe();
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
