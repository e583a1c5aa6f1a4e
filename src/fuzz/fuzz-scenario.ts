import { hcallReturnName, rtasStatusName } from '../agent/hcall-codes.js';
import { type Answer, type FuzzCall, hex, RTAS_SERVICES } from './fuzz-calls.js';

/**
 * A fuzz sequence as a scenario file (steps tce-window, hcall, rtas with literal arguments), so that `tcelab run <file>`
 * replays it on a fresh lab and checks every answer against what the model said: the shrunk sequence of a
 * disagreement fails on exactly the call the model and QEMU disagree on.
 */

/** The PE's window name in the written file (the rtas steps name their PE by it). */
const PE = 'pe';

export interface ScenarioCall {
  call: FuzzCall;
  /** The call's place in the fuzz run's sequence (0-based). */
  index: number;
  /** What the model answers. */
  expected: Answer;
}

export interface FuzzScenarioInput {
  seed: number;
  description: string;
  profile: string;
  /** The profile's edu device (its PE is the one the RTAS calls name). */
  device: string;
  /** The other PHB's default window the run clears first. */
  clear: { liobn: bigint; start: bigint; entries: bigint };
  calls: ScenarioCall[];
}

type Step = Record<string, unknown>;

export function fuzzScenarioFile(input: FuzzScenarioInput): { description: string; profile: string; steps: Step[] } {
  const steps: Step[] = [
    { step: 'bind', device: input.device, as: 'edu' },
    { step: 'tce-window', binding: 'edu', as: PE },
    // The state the model starts from (the fuzz's own reset).
    {
      step: 'hcall',
      call: 'H_STUFF_TCE',
      liobn: hex(input.clear.liobn),
      ioba: hex(input.clear.start),
      tce: '0x0',
      npages: Number(input.clear.entries),
      expect: 'H_SUCCESS',
      label: 'start: clear the other PHB window',
    },
    { step: 'rtas', service: RTAS_SERVICES.reset, pe: PE, expect: 'success', label: "start: reset the PE's windows" },
    ...input.calls.map((c) => callStep(c, input.seed)),
    // The PE's default window back before the edu is given back.
    { step: 'rtas', service: RTAS_SERVICES.reset, pe: PE, expect: 'success', label: "end: reset the PE's windows" },
    { step: 'unbind', binding: 'edu' },
  ];
  return { description: input.description, profile: input.profile, steps };
}

function callStep({ call: c, index, expected }: ScenarioCall, seed: number): Step {
  const label = `seed ${seed} call ${index}: ${c.op}`;
  if ('rc' in expected) {
    const expect = hcallReturnName(expected.rc);
    const base = { step: 'hcall', call: c.op, liobn: hex((c as { liobn: bigint }).liobn), ioba: hex((c as { ioba: bigint }).ioba) };
    switch (c.op) {
      case 'H_GET_TCE':
        return { ...base, expect, ...(expected.tce === undefined ? {} : { expectTce: hex(expected.tce) }), label };
      case 'H_PUT_TCE':
        return { ...base, tce: hex(c.tce), expect, label };
      case 'H_STUFF_TCE':
        return { ...base, tce: hex(c.tce), npages: Number(c.npages), expect, label };
      case 'H_PUT_TCE_INDIRECT': {
        const list =
          c.list.at === 'page'
            ? { at: 'page' }
            : c.list.at === 'offset'
              ? { at: 'offset', offset: c.list.offset }
              : { at: 'phys', phys: hex(c.list.phys) };
        return {
          ...base,
          tce: hex(c.tce),
          npages: Number(c.npages),
          list: { tces: c.tces, ...list, stride: hex(c.stride) },
          expect,
          label,
        };
      }
      default:
        throw new Error(`a hypercall answer for ${c.op}`);
    }
  }
  const rtas = { step: 'rtas', service: RTAS_SERVICES[c.op as keyof typeof RTAS_SERVICES], pe: PE };
  const expect = rtasStatusName(expected.status);
  const out = expected.out ? { expectOut: expected.out.map(hex) } : {};
  const peArgs = (x: { buid: 'pe' | bigint; cfgAddr?: number }) => ({
    ...(x.cfgAddr === undefined ? {} : { cfgAddr: hex(x.cfgAddr) }),
    ...(x.buid === 'pe' ? {} : { buid: hex(x.buid) }),
  });
  switch (c.op) {
    case 'query':
    case 'reset':
      return { ...rtas, ...peArgs(c), expect, ...out, label };
    case 'create':
      return { ...rtas, ...peArgs(c), pageShift: c.pageShift, windowShift: c.windowShift, expect, ...out, label };
    case 'remove':
      return { ...rtas, liobn: hex(c.liobn), expect, label };
    default:
      throw new Error(`an RTAS answer for ${c.op}`);
  }
}
