import { requireProfileInput } from './profile-input.js';
import { resolve } from 'node:path';
import { type HcallFuzzSummary, runHcallFuzz } from '../fuzz/hcall-fuzz.js';
import { MODEL_FAULTS, type ModelFault } from '../fuzz/qemu-tce-model.js';
import { loadProfile, runsUnderKvm } from '../qemu/profile.js';
import { defaultResultsDir } from '../scenario/runner.js';
import { InputError } from '../util/errors.js';
import { StderrProgress } from '../util/progress.js';
import { abortingOnSignals } from './interrupt.js';

export interface FuzzHcallArgs {
  seed?: string;
  count?: string;
  time?: string;
  batch?: string;
  profile?: string;
  results?: string;
  seedFaults?: string;
  json: boolean;
}

const WHAT = 'fuzz hcall';
const MAX_COUNT = 10_000_000;

/** A flag's value as given (yargs keeps it a string, so that the message shows what was typed). */
function integer(flag: string, raw: string | undefined, min: number, max: number, fallback?: number): number {
  if (raw === undefined && fallback !== undefined) return fallback;
  if (raw === undefined) throw new InputError(WHAT, flag, 'is missing', `give ${flag} N (${min} to ${max})`);
  const v = /^\d{1,10}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(v >= min && v <= max)) throw new InputError(WHAT, flag, `${JSON.stringify(raw)} is not an integer from ${min} to ${max}`);
  return v;
}

function seconds(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const v = /^\d{1,6}(\.\d{1,3})?$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(v > 0 && v <= 86_400)) throw new InputError(WHAT, flag, `${JSON.stringify(raw)} is not a number of seconds above 0, at most 86400`);
  return v;
}

/** --seed-faults a,b: faults of the model (MODEL_FAULTS), to prove the fuzz reports a disagreement. */
function parseFaults(raw: string | undefined): Set<ModelFault> {
  if (raw === undefined || raw === '') return new Set();
  const names = raw.split(',').map((s) => s.trim());
  const known = Object.keys(MODEL_FAULTS);
  for (const n of names)
    if (!known.includes(n))
      throw new InputError(WHAT, '--seed-faults', `has no seedable fault "${n}"`, `seedable faults: ${known.join(', ')}`);
  return new Set(names as ModelFault[]);
}

/**
 * `tcelab fuzz hcall --seed N --count M`: exit 0 when QEMU answered every call as the model says, 1 on a disagreement
 * (shrunk and written as a scenario file) or a lab that failed, 2 for bad flags.
 */
export async function fuzzHcallCommand(args: FuzzHcallArgs): Promise<number> {
  const seed = integer('--seed', args.seed, 0, 2 ** 32 - 1);
  const count = integer('--count', args.count, 1, MAX_COUNT);
  const batch = integer('--batch', args.batch, 1, MAX_COUNT, 500);
  const time = seconds('--time', args.time);
  const faults = parseFaults(args.seedFaults);
  const profileName = args.profile ?? 'emulated';
  await requireProfileInput(WHAT, profileName);
  const profile = await loadProfile(profileName);
  // The model is of QEMU's own handlers: under KVM the host kernel answers the TCE hypercalls (another model).
  if (runsUnderKvm(profile) || profile.inner || !profile.devices.some((d) => d.driver === 'edu'))
    throw new InputError(
      WHAT,
      '--profile',
      `${profile.name}: only QEMU's own handlers (an emulated lab with an edu device, as the emulated profile) are modelled; ` +
        "the model of a KVM host's handlers is not written yet",
    );
  const resultsDir = resolve(args.results ?? defaultResultsDir(`fuzz-hcall-${seed}`));
  const progress = new StderrProgress();
  const summary = await abortingOnSignals((signal) =>
    runHcallFuzz({ seed, count, timeSec: time, batch, profile, faults, resultsDir, progress, signal }),
  );
  process.stdout.write(args.json ? `${JSON.stringify(summary, null, 2)}\n` : summaryText(summary));
  return summary.disagreement ? 1 : 0;
}

function summaryText(s: HcallFuzzSummary): string {
  const calls = Object.entries(s.byCall)
    .map(
      ([op, c]) =>
        `  ${op.padEnd(20)} ${String(c.calls).padStart(7)}  ${Object.entries(c.answers)
          .map(([a, n]) => `${a} ${n}`)
          .join(', ')}`,
    )
    .join('\n');
  const head =
    `fuzz hcall seed ${s.seed} on ${s.profile} (guest ${s.guestKernel}, QEMU ${s.qemuVersion})` +
    `${s.seedFaults.length ? `, model faults seeded: ${s.seedFaults.join(', ')}` : ''}: ` +
    `${s.count} calls in ${(s.fuzzMs / 1000).toFixed(1)} s (${s.callsPerSec}/s), stopped by ${s.stoppedBy}; ` +
    `sequence sha256 ${s.sequenceSha256.slice(0, 16)}…; ${s.nonZeroReads} written entries read back\n${calls}\n`;
  if (!s.disagreement) return `${head}PASS: every answer as the model of QEMU's handlers says\n  summary: ${s.summaryFile}\n`;
  const d = s.disagreement;
  return (
    `${head}FAIL: call ${d.index}: ${d.call}: the model says ${d.expected}, QEMU answered ${d.measured}\n` +
    `  shrunk to ${d.shrunk.calls} call(s) in ${d.shrunk.tests} replays (${(d.shrunk.ms / 1000).toFixed(1)} s)` +
    `${d.shrunk.cutShort ? ', cut short by its bound' : ''}: call ${d.shrunk.disagreement.index}: ${d.shrunk.disagreement.call}\n` +
    `  replay: tcelab run ${d.scenarioFile}\n  summary: ${s.summaryFile}\n`
  );
}
