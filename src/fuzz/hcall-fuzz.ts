import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hcallReturnName, rtasStatusName } from '../agent/hcall-codes.js';
import type { Profile } from '../qemu/profile.js';
import { TcelabError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { CallGenerator, type GeneratorOptions } from './call-generator.js';
import { type Answer, answersAgree, describeAnswer, describeCall, type FuzzCall, hex } from './fuzz-calls.js';
import { type CallTarget, type FuzzLab, openFuzzLab } from './fuzz-lab.js';
import { fuzzScenarioFile } from './fuzz-scenario.js';
import { defaultPhb, type ModelFault, type ModelOptions, ModelRefusal, QemuTceModel } from './qemu-tce-model.js';
import { type SequenceFailure, shrinkSequence } from './shrink.js';

/**
 * `tcelab fuzz hcall`: a seeded sequence of TCE hypercalls and DDW RTAS calls against an emulated lab, every answer
 * judged against the model of QEMU's handlers (qemu-tce-model.ts); QEMU and the agent checked after each batch; the
 * first disagreement shrunk on the same lab (delta debugging, the windows reset before each replay) and written as a
 * scenario file that `tcelab run` replays.
 */

export interface HcallFuzzOptions {
  seed: number;
  count: number;
  /** Stop issuing new calls after this many seconds of fuzzing (the boot and the shrinking are not counted). */
  timeSec?: number;
  /** Calls between checks that QEMU runs and the agent answers. */
  batch: number;
  profile: Profile;
  faults: ReadonlySet<ModelFault>;
  resultsDir: string;
  progress: Progress;
  signal?: AbortSignal;
  runtimeRoot?: string;
  /** Bounds of the shrinking: replays, and seconds. */
  shrinkMaxTests?: number;
  shrinkTimeSec?: number;
}

export interface Disagreement {
  index: number;
  call: string;
  expected: string;
  measured: string;
}

export interface HcallFuzzSummary {
  target: 'hcall';
  seed: number;
  profile: string;
  guestKernel: string;
  qemuVersion: string;
  seedFaults: string[];
  countRequested: number;
  timeLimitSec?: number;
  /** Calls issued and judged (up to and including a disagreement). */
  count: number;
  /** sha256 over the issued calls' text (describeCall, one per line): a replay of the seed gives the same. */
  sequenceSha256: string;
  stoppedBy: 'count' | 'time' | 'disagreement';
  batches: number;
  fuzzMs: number;
  callsPerSec: number;
  totalMs: number;
  /** H_GET_TCE answers with a non-zero value: entries the sequence wrote, read back and compared. */
  nonZeroReads: number;
  /** Windows of the fuzzed PHBs the guest kernel made for itself, never aimed at (liobn: start+size). */
  leftAlone: string[];
  /** Per call type: how many, and the answers by name. */
  byCall: Record<string, { calls: number; answers: Record<string, number> }>;
  disagreement?: Disagreement & {
    shrunk: { calls: number; tests: number; replayedCalls: number; ms: number; cutShort: boolean; disagreement: Disagreement };
    scenarioFile: string;
  };
  summaryFile: string;
}

const CHUNK = 64;
const MiB = 1024n * 1024n;

/** The model's picture of a profile's lab: the machine's default PHB 0 and the profile's PHBs, its RAM. */
export function modelOptionsOf(profile: Profile): ModelOptions {
  const phbs = [
    defaultPhb(0),
    ...profile.phbs.map((p) => ({
      ...defaultPhb(p.index),
      ddw: p.ddw,
      ...(p.dmaWindowMiB === undefined ? {} : { dmaWinSize: BigInt(p.dmaWindowMiB) * MiB }),
    })),
  ];
  // PHB 0's DDW (SPAPR_PCI_LIOBN(0, 1)) is the guest kernel's: Linux makes one at boot for virtio-pci's 64-bit DMA mask.
  return { phbs, ramBytes: BigInt(profile.qemu.memoryMiB) * MiB, foreignLiobns: [0x80000001n] };
}

/** The calls of a run judged one by one: the first disagreement, if any. */
function judge(
  model: QemuTceModel,
  peBuid: bigint,
  calls: readonly FuzzCall[],
  answers: readonly Answer[],
  count?: (c: FuzzCall, a: Answer) => void,
): { at: number; expected: Answer; measured: Answer } | undefined {
  for (let i = 0; i < calls.length; i++) {
    const expected = model.apply(calls[i]!, peBuid);
    count?.(calls[i]!, answers[i]!);
    if (!answersAgree(expected, answers[i]!)) return { at: i, expected, measured: answers[i]! };
  }
  return undefined;
}

const answerText = (a: Answer) => describeAnswer(a, hcallReturnName);
const answerName = (a: Answer) => ('rc' in a ? hcallReturnName(a.rc) : rtasStatusName(a.status));

/** Two disagreements are the same one when the call type and both answers' codes are (a GET's values may differ). */
function signatureOf(c: FuzzCall, expected: Answer, measured: Answer): string {
  const valueDiffers = 'rc' in expected && 'rc' in measured && expected.rc === measured.rc ? ' (value)' : '';
  const outDiffers = 'status' in expected && 'status' in measured && expected.status === measured.status ? ' (outputs)' : '';
  return `${c.op}: expected ${answerName(expected)}, measured ${answerName(measured)}${valueDiffers}${outDiffers}`;
}

export async function runHcallFuzz(opts: HcallFuzzOptions): Promise<HcallFuzzSummary> {
  const started = Date.now();
  const { profile, progress } = opts;
  const modelOpts = modelOptionsOf(profile);
  const edu = profile.devices.find((d) => d.driver === 'edu');
  const pePhb = profile.phbs.find((p) => p.id === edu?.phb);
  if (!edu || !pePhb) throw new TcelabError('fuzz hcall', `profile ${profile.name} has no edu device on a PHB of its own`);
  const genOpts: GeneratorOptions = { seed: opts.seed, model: modelOpts, pePhbIndex: pePhb.index, otherPhbIndex: 0 };
  const fresh = () => new QemuTceModel({ ...modelOpts, faults: opts.faults });
  const other = fresh()
    .windows()
    .find((w) => w.enabled && w.liobn === 0x80000000n)!;
  const clear = { liobn: other.liobn, start: other.busOffset, entries: other.nbTable };
  await mkdir(opts.resultsDir, { recursive: true });
  const fl = await openFuzzLab({ profile, progress, clear, runtimeRoot: opts.runtimeRoot });
  let failed = true;
  try {
    const peBuid = fresh().buidOf(pePhb.index);
    if (fl.pe.buid !== peBuid)
      throw new TcelabError(
        'fuzz hcall',
        `the edu's PE has BUID 0x${fl.pe.buid.toString(16)}, the model expects 0x${peBuid.toString(16)}`,
        'the model of the lab is wrong',
      );
    const summary = await fuzzOnLab(opts, fl, { modelOpts, genOpts, fresh, clear, peBuid, started });
    failed = summary.disagreement !== undefined;
    return summary;
  } finally {
    const kept = await fl.close(failed, join(opts.resultsDir, 'artifacts'));
    if (kept) progress.info(`lab artifacts kept in ${kept}`);
  }
}

interface FuzzContext {
  modelOpts: ModelOptions;
  genOpts: GeneratorOptions;
  fresh: () => QemuTceModel;
  clear: { liobn: bigint; start: bigint; entries: bigint };
  peBuid: bigint;
  started: number;
}

async function fuzzOnLab(opts: HcallFuzzOptions, fl: FuzzLab, ctx: FuzzContext): Promise<HcallFuzzSummary> {
  const { progress, signal } = opts;
  const target = fl.target;
  const interrupted = () => {
    if (signal?.aborted)
      throw new TcelabError(
        'fuzz hcall',
        `interrupted (${signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? 'aborted')})`,
        'the lab was quit',
      );
  };
  await target.reset();
  const model = ctx.fresh();
  const leftAlone = await checkWindows(target, model, ctx.modelOpts);
  const gen = new CallGenerator(ctx.genOpts);
  const hash = createHash('sha256');
  const calls: FuzzCall[] = [];
  const byCall: HcallFuzzSummary['byCall'] = {};
  let nonZeroReads = 0;
  const tally = (c: FuzzCall, a: Answer) => {
    byCall[c.op] ??= { calls: 0, answers: {} };
    const e = byCall[c.op];
    e.calls++;
    e.answers[answerName(a)] = (e.answers[answerName(a)] ?? 0) + 1;
    if (c.op === 'H_GET_TCE' && 'tce' in a && a.tce) nonZeroReads++;
  };
  const fuzzStart = Date.now();
  const deadline = opts.timeSec === undefined ? Number.POSITIVE_INFINITY : fuzzStart + opts.timeSec * 1000;
  let found: { at: number; expected: Answer; measured: Answer } | undefined;
  let batches = 0;
  let stoppedBy: HcallFuzzSummary['stoppedBy'] = 'count';
  await progress.step(`fuzz: seed ${opts.seed}, ${opts.count} calls`, async (update) => {
    while (calls.length < opts.count && !found) {
      const batchEnd = Math.min(opts.count, calls.length + opts.batch);
      while (calls.length < batchEnd && !found) {
        interrupted();
        if (Date.now() > deadline) break;
        const chunk = Array.from({ length: Math.min(CHUNK, batchEnd - calls.length) }, () => gen.next());
        const answers = await target.issue(chunk);
        const bad = judgeChunk(model, ctx.peBuid, chunk, answers, tally);
        const judged = bad ? chunk.slice(0, bad.at + 1) : chunk;
        if (bad) found = { ...bad, at: calls.length + bad.at };
        for (const c of judged) hash.update(`${describeCall(c)}\n`);
        calls.push(...judged);
        const secs = (Date.now() - fuzzStart) / 1000;
        update(`${calls.length}/${opts.count} calls, ${Math.round(calls.length / Math.max(secs, 0.001))}/s`, calls.length / opts.count);
      }
      batches++;
      await target.checkAlive();
      if (Date.now() > deadline && !found && calls.length < opts.count) {
        stoppedBy = 'time';
        break;
      }
    }
  });
  const fuzzMs = Date.now() - fuzzStart;
  if (found) stoppedBy = 'disagreement';
  const summaryFile = join(opts.resultsDir, `fuzz-${opts.seed}-summary.json`);
  const summary: HcallFuzzSummary = {
    target: 'hcall',
    seed: opts.seed,
    profile: opts.profile.name,
    guestKernel: fl.guestKernel,
    qemuVersion: fl.lab.qmp.qemuVersion,
    seedFaults: [...opts.faults],
    countRequested: opts.count,
    ...(opts.timeSec === undefined ? {} : { timeLimitSec: opts.timeSec }),
    count: calls.length,
    sequenceSha256: hash.digest('hex'),
    stoppedBy,
    batches,
    fuzzMs,
    callsPerSec: Math.round((calls.length / Math.max(fuzzMs, 1)) * 1000 * 10) / 10,
    totalMs: 0,
    byCall,
    nonZeroReads,
    leftAlone,
    summaryFile,
  };
  if (found) {
    const d: Disagreement = {
      index: found.at,
      call: describeCall(calls[found.at]!),
      expected: answerText(found.expected),
      measured: answerText(found.measured),
    };
    progress.info(`disagreement at call ${d.index}: ${d.call}: the model says ${d.expected}, QEMU answered ${d.measured}`);
    summary.disagreement = { ...d, ...(await shrinkAndWrite(opts, target, ctx, calls, found)) };
  }
  summary.totalMs = Date.now() - ctx.started;
  await writeFile(summaryFile, `${JSON.stringify(summary, null, 2)}\n`);
  return summary;
}

/**
 * The model starts from what QEMU has after the reset: every window of the fuzzed PHBs in QEMU's memory tree is one
 * the model has enabled with the same start and size, or one it leaves alone (the guest kernel's own).
 */
async function checkWindows(target: CallTarget, model: QemuTceModel, modelOpts: ModelOptions): Promise<string[]> {
  const phbs = new Set(modelOpts.phbs.map((p) => BigInt(p.index)));
  const live = (await target.windows()).filter((w) => phbs.has((w.liobn >> 8n) & 0xffn));
  const text = (w: { liobn: bigint; start: bigint; size: bigint }) => `${hex(w.liobn)}: ${hex(w.start)}+${hex(w.size)}`;
  const foreign = new Set(modelOpts.foreignLiobns ?? []);
  const expected = model
    .windows()
    .filter((w) => w.enabled)
    .map((w) => text({ liobn: w.liobn, start: w.busOffset, size: w.nbTable << BigInt(w.pageShift) }));
  const measured = live.filter((w) => !foreign.has(w.liobn)).map(text);
  if (expected.join(', ') !== measured.join(', '))
    throw new TcelabError(
      'fuzz hcall',
      `after the reset QEMU has the windows ${measured.join(', ') || 'none'}; the model has ${expected.join(', ') || 'none'}`,
      "the model's picture of this lab is wrong",
    );
  return live.filter((w) => foreign.has(w.liobn)).map(text);
}

/** judge(), with a model refusal (a call the generator must never make) reported as the generator's error. */
function judgeChunk(...args: Parameters<typeof judge>): ReturnType<typeof judge> {
  try {
    return judge(...args);
  } catch (err) {
    if (err instanceof ModelRefusal) throw new TcelabError('fuzz hcall', `the generator made a call the model refuses: ${err.message}`);
    throw err;
  }
}

async function shrinkAndWrite(
  opts: HcallFuzzOptions,
  target: CallTarget,
  ctx: FuzzContext,
  calls: FuzzCall[],
  found: { at: number; expected: Answer; measured: Answer },
): Promise<{ shrunk: NonNullable<HcallFuzzSummary['disagreement']>['shrunk']; scenarioFile: string }> {
  const { progress } = opts;
  const indexed = calls.map((call, index) => ({ call, index }));
  const replay = async (candidate: Array<{ call: FuzzCall; index: number }>): Promise<SequenceFailure | undefined> => {
    await target.reset();
    const seq = candidate.map((x) => x.call);
    const bad = judgeChunk(ctx.fresh(), ctx.peBuid, seq, await target.issue(seq));
    return bad && { index: bad.at, signature: signatureOf(seq[bad.at]!, bad.expected, bad.measured) };
  };
  const shrinkStart = Date.now();
  const first = { index: found.at, signature: signatureOf(calls[found.at]!, found.expected, found.measured) };
  const result = await progress.step(`shrink the ${found.at + 1} calls up to the disagreement`, (update) =>
    shrinkSequence(indexed, first, replay, {
      maxTests: opts.shrinkMaxTests ?? 2000,
      deadline: shrinkStart + (opts.shrinkTimeSec ?? 600) * 1000,
      onTest: (tests, length) => update(`${tests} replays, ${length} calls`),
    }),
  );
  // The shrunk sequence's expectations, and its disagreement, from a fresh model and one more replay.
  const model = ctx.fresh();
  const expected = result.calls.map((x) => model.apply(x.call, ctx.peBuid));
  await target.reset();
  const measured = await target.issue(result.calls.map((x) => x.call));
  const at = result.failure.index;
  const disagreement: Disagreement = {
    index: result.calls[at]!.index,
    call: describeCall(result.calls[at]!.call),
    expected: answerText(expected[at]!),
    measured: answerText(measured[at]!),
  };
  const scenarioFile = join(opts.resultsDir, `fuzz-${opts.seed}.json`);
  const edu = opts.profile.devices.find((d) => d.driver === 'edu')!;
  const file = fuzzScenarioFile({
    seed: opts.seed,
    description:
      `tcelab fuzz hcall --seed ${opts.seed}${opts.faults.size ? ` --seed-faults ${[...opts.faults].join(',')}` : ''}: ` +
      `the shortest sequence found (${result.calls.length} of ${found.at + 1} calls) on which QEMU and the model of its TCE ` +
      `handlers disagree; every expect is the model's answer. Call ${disagreement.index}: ${disagreement.call}: the model ` +
      `says ${disagreement.expected}, QEMU answered ${disagreement.measured}`,
    profile: opts.profile.name,
    device: edu.id,
    clear: ctx.clear,
    calls: result.calls.map((x, i) => ({ call: x.call, index: x.index, expected: expected[i]! })),
  });
  await writeFile(scenarioFile, `${JSON.stringify(file, null, 2)}\n`);
  progress.info(
    `shrunk to ${result.calls.length} call(s) in ${result.tests} replays: call ${disagreement.index}: ${disagreement.call}: ` +
      `the model says ${disagreement.expected}, QEMU answered ${disagreement.measured}; replay: tcelab run ${scenarioFile}`,
  );
  return {
    shrunk: {
      calls: result.calls.length,
      tests: result.tests,
      replayedCalls: result.replayedCalls,
      ms: Date.now() - shrinkStart,
      cutShort: result.cutShort,
      disagreement,
    },
    scenarioFile,
  };
}
