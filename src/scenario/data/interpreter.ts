import type { Profile } from '../../qemu/profile.js';
import { TcelabError } from '../../util/errors.js';
import { disposeInnerLab } from '../nested.js';
import type { ScenarioContext, ScenarioDefinition } from '../scenario.js';
import { validateScenarioOptions } from '../seeded-faults.js';
import type { ScenarioFile } from './scenario-file.js';
import { STEPS, type ScenarioStep, type StepEnv, type StepState } from './steps.js';
import { type KernelRequirements, mergeRequirements } from '../../kernel/kernel-facts.js';
import { type AnswerDefectName, explainAnswer } from '../answer-defects.js';

/** A ScenarioDefinition whose steps come from a scenario file; `do` steps call named procedures. */
export function definitionFromFile(file: ScenarioFile, procedures: ScenarioDefinition[]): ScenarioDefinition {
  const used = file.steps
    .filter((s) => s.step === 'do')
    .map((s) => {
      const p = procedures.find((x) => x.name === s.procedure);
      if (!p)
        throw new TcelabError(
          `scenario ${file.name}`,
          `step "do" names the unknown procedure "${s.procedure}"`,
          `known: ${procedures.map((x) => x.name).join(', ')}`,
        );
      return p;
    });
  // A file takes the options of the procedures it calls; each `do` step's own options are checked against its procedure now.
  for (const [i, s] of file.steps.entries()) {
    if (s.step !== 'do') continue;
    const proc = procedures.find((x) => x.name === s.procedure)!;
    validateScenarioOptions({ ...proc, name: file.name }, s.options ?? {}, `steps[${i}].options`);
  }
  return {
    name: file.name,
    description: file.description,
    defaultProfile: file.profile,
    optionSpecs: Object.assign({}, ...used.map((p) => p.optionSpecs ?? {})),
    seedableFaults: used.some((p) => p.seedableFaults) ? Object.assign({}, ...used.map((p) => p.seedableFaults ?? {})) : undefined,
    keepsGuestPins: used.find((p) => p.keepsGuestPins)?.keepsGuestPins,
    // A file that launches inner labs (an inner-launch step, or a procedure that does) runs on the outer machine.
    drivesInnerLabs: used.some((p) => p.drivesInnerLabs) || file.steps.some((s) => s.step === 'inner-launch'),
    bootsCold: used.find((p) => p.bootsCold)?.bootsCold,
    guestModules: [...new Set([...used.flatMap((p) => p.guestModules ?? []), ...file.steps.flatMap((s) => stepGuestModule(s.step) ?? [])])],
    requires: mergeRequirements(...used.map((p) => p.requires), ...file.steps.map((s) => stepRequirements(s.step))),
    adjustProfile: (profile: Profile, options) =>
      used.reduce((p, proc) => (proc.adjustProfile ? proc.adjustProfile(p, options) : p), profile),
    async run(ctx) {
      const st: StepState = {
        bindings: new Map(),
        workers: new Map(),
        regions: new Map(),
        // "dma32": the default 32-bit window, there from the start (on pseries it begins at IOVA 0).
        windows: new Map([['dma32', { start: 0n, size: 0n }]]),
        mappedAt: new Map(),
        marks: new Map(),
        inners: new Map(),
        tceWindows: new Map(),
        hostile: {},
      };
      try {
        for (const [i, step] of file.steps.entries()) {
          const n = i + 1;
          // An interrupted run starts no further step.
          if (ctx.signal?.aborted) throw new TcelabError(`step ${n} (${step.step})`, 'not started: the run was interrupted');
          const timeoutMs = (step.timeoutSec ?? 300) * 1000;
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  new TcelabError(
                    `step ${n} (${step.step})`,
                    `did not finish within ${timeoutMs / 1000} s`,
                    'raise its "timeoutSec" if the lab is slow',
                  ),
                ),
              timeoutMs,
            );
          });
          try {
            await Promise.race([runStep(ctx, st, step, n, procedures), timeout]);
          } finally {
            clearTimeout(timer);
          }
        }
        // What the steps left plugged, unplugged once they all ran; after a failed step the run's teardown takes it
        // with the machine instead (a guest-side PHB removal alone is 13-24 s of drmgr under TCG).
        await st.hotplug?.unplugAll();
      } finally {
        for (const [label, lab] of st.inners) await disposeInnerLab(ctx, lab, label).catch(() => {});
        ctx.watchGuestPid(undefined);
      }
    },
  };
}

/** One step: its table entry runs it, with the names earlier steps gave and the run's context. */
function runStep(ctx: ScenarioContext, st: StepState, s: ScenarioStep, n: number, procedures: ScenarioDefinition[]): Promise<void> {
  const tag = `step ${n}: ${s.step}`;
  const env: StepEnv = {
    ctx,
    st,
    tag,
    procedures,
    event: (name) => {
      st.lastEvent = { name, t: ctx.phase(name) };
    },
    named: (m, key, what) => {
      const v = m.get(key);
      if (v === undefined) throw new TcelabError(tag, `no ${what} named "${key}" (define it with "as" in an earlier step)`);
      return v;
    },
    expectable: async (label, op, expectError, knownDefects) => {
      if (expectError && knownDefects?.length) {
        // The kernel decides which defects are excused: one that has a defect's fix gets no excuse for its answer. The
        // operation is under way meanwhile: its failure is judged below, not an unhandled rejection now.
        op.catch(() => undefined);
        st.kernelRelease ??= ctx.agent.info().then((i) => i.kernelRelease);
        const release = await st.kernelRelease;
        let shown: AnswerDefectName | undefined;
        await ctx.checks.failsWith(`${tag} ${label}`, op, expectError, (answer) => {
          const why = explainAnswer(knownDefects, answer, { release, source: ctx.kernel.source });
          shown = why.name;
          return why;
        });
        return shown;
      }
      if (expectError) await ctx.checks.failsWith(`${tag} ${label}`, op, expectError);
      else if ((await ctx.checks.succeeds(`${tag} ${label}`, op)) === undefined) throw new TcelabError(tag, `${label} failed`);
      return undefined;
    },
  };
  // The file was checked against this entry's fields when it was loaded: s is the entry's own step type.
  const entry = STEPS[s.step] as unknown as { run(step: ScenarioStep, env: StepEnv): Promise<void> };
  const only = s.onlyIfPageSize;
  if (only === undefined) return entry.run(s, env);
  return ctx.agent
    .info()
    .then(({ pageSize }) =>
      pageSize === only
        ? entry.run(s, env)
        : ctx.checks.notApplicable(tag, `only for ${only / 1024} KiB pages; this kernel's are ${pageSize / 1024} KiB`),
    );
}

/** The guest module a step type drives (built for the kernel before the lab starts). */
function stepGuestModule(type: ScenarioStep['step']): string | undefined {
  return (STEPS as unknown as Record<string, { guestModule?: string }>)[type]?.guestModule;
}

/** What a step type needs of the guest kernel. */
function stepRequirements(type: ScenarioStep['step']): KernelRequirements | undefined {
  return (STEPS as unknown as Record<string, { requires?: KernelRequirements }>)[type]?.requires;
}
