import type { Spec } from '../../util/validate.js';

/**
 * The step vocabulary of scenario files. Every step is {"step": <type>, ...}
 * with an optional "timeoutSec"; names given with "as" are referred to by
 * later steps (a worker, a binding, a region, a window, a mark).
 */
const name: Spec = {
  type: 'string',
  pattern: /^[A-Za-z][A-Za-z0-9_-]{0,31}$/,
  patternHint: 'a name: a letter, then letters, digits, - or _',
};
const opt = <T extends Spec>(s: T): T => ({ ...s, optional: true });
const timeoutSec: Spec = { type: 'integer', min: 1, max: 3600, optional: true };
const errno: Spec = { type: 'string', pattern: /^E[A-Z0-9]+$/, patternHint: 'an errno name such as EBUSY', optional: true };

export const STEP_SPECS: Record<string, Record<string, Spec>> = {
  bind: { device: name, as: name },
  unbind: { binding: name },
  'start-worker': { as: name },
  'stop-worker': { worker: name, signal: { type: 'string', enum: ['TERM', 'KILL'], optional: true } },
  open: { worker: name, binding: name },
  alloc: { worker: name, sizeMiB: { type: 'integer', min: 1, max: 65536 }, hugetlb: opt({ type: 'boolean' }), as: name },
  register: { worker: name, region: name, expectError: errno },
  unregister: { worker: name, region: name, expectError: errno },
  'create-window': {
    worker: name,
    pageShift: { type: 'integer', min: 12, max: 34 },
    sizeMiB: { type: 'integer', min: 1, max: 1 << 24 },
    levels: opt({ type: 'integer', min: 1, max: 5 }),
    as: name,
    expectError: errno,
  },
  'remove-window': { worker: name, window: name },
  map: { worker: name, region: name, window: name, sizeMiB: opt({ type: 'integer', min: 1, max: 65536 }), expectError: errno },
  unmap: { worker: name, window: name, sizeMiB: { type: 'integer', min: 1, max: 65536 } },
  'close-container': { worker: name },
  'close-group': { worker: name },
  mark: { as: name },
  'expect-guest-pins': {
    since: name,
    mib: opt({ type: 'integer', min: 0, max: 65536 }),
    pages: opt({ type: 'integer', min: 0, max: 1 << 30 }),
  },
  'expect-release': { since: name, withinSec: { type: 'integer', min: 1, max: 600 } },
  'expect-host-windows': { phb: name, count: { type: 'integer', min: 0, max: 8 } },
  'hotplug-phb': { index: { type: 'integer', min: 1, max: 30 }, ddw: opt({ type: 'boolean' }), as: name },
  'hotplug-device': { phb: name, driver: { type: 'string', pattern: /^[a-z0-9][a-z0-9_-]*$/ }, host: opt({ type: 'string' }), as: name },
  'unplug-device': { device: name },
  'unplug-phb': { phb: name },
  'guest-exec': {
    argv: { type: 'array', maxItems: 64, items: { type: 'string' } },
    expectExit: opt({ type: 'integer', min: 0, max: 255 }),
  },
  sleep: { ms: { type: 'integer', min: 0, max: 600_000 } },
  shutdown: { via: { type: 'string', enum: ['powerdown', 'agent', 'quit'] } },
  // A nested lab host (a profile with "inner"): the inner QEMU in the guest.
  'inner-launch': { as: name },
  'inner-shutdown': { inner: name, via: { type: 'string', enum: ['quit', 'term', 'kill'] } },
  'adopt-fds': { worker: name, inner: name },
  do: { procedure: name, options: opt({ type: 'map', values: { type: 'scalar' } }) },
};

export const STEP_TYPES = Object.keys(STEP_SPECS);

export function stepSpec(type: string): Spec {
  return { type: 'object', fields: { step: { type: 'string', enum: STEP_TYPES }, timeoutSec, ...STEP_SPECS[type]! } };
}
