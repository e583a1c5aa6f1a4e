import type { ReleaseVerdict } from '../probes/release.js';
import { describeError, InputError, TcelabError } from '../util/errors.js';

/** Prints an error for a person (no stack trace) and returns the exit code. */
export function reportError(err: unknown): number {
  const text = describeError(err);
  process.stderr.write(`tcelab: ${text}\n`);
  if (!(err instanceof TcelabError) && process.env.TCELAB_DEBUG) {
    process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  }
  return err instanceof InputError ? 2 : 1;
}

export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

/** A release verdict's line: "release: guest pinnedPages back to baseline 58 ms after worker exit", or why not. */
export function releaseLine(v: ReleaseVerdict): string {
  const how = v.returned
    ? `back to baseline ${formatMs(v.latencyMs ?? 0)} after ${v.event}`
    : v.atRestMs !== undefined
      ? `NOT back: at rest after RCU barriers ${formatMs(v.atRestMs)} after ${v.event}`
      : `NOT back within ${formatMs(v.timeoutMs)} of ${v.event}`;
  return `  release: ${v.source} ${v.counter} ${how}\n`;
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
