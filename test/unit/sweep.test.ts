import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sweepStaleLabs } from '../../src/lab/sweep.js';
import { scratchDir } from '../helpers/scratch.js';

/** A pid nobody has any more: a process that ran and was reaped. */
function deadPid(): number {
  return Number(spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim());
}

describe('the stale-lab sweep', () => {
  it('takes each stale lab once when labs starting at once sweep at once', async () => {
    const root = scratchDir('sweep');
    for (const name of ['lab-dead01', 'lab-dead02']) {
      mkdirSync(join(root, name));
      writeFileSync(join(root, name, 'lab.json'), JSON.stringify({ controllerPid: deadPid() }));
      writeFileSync(join(root, name, 'qmp.sock'), '');
    }
    // A live controller's lab (this process) is left alone.
    mkdirSync(join(root, 'lab-live01'));
    writeFileSync(join(root, 'lab-live01', 'lab.json'), JSON.stringify({ controllerPid: process.pid }));
    const sweeps = await Promise.all([sweepStaleLabs(root), sweepStaleLabs(root), sweepStaleLabs(root)]);
    expect(
      sweeps
        .flat()
        .map((s) => s.keptAs)
        .sort(),
    ).toEqual([join(root, 'stale-lab-dead01'), join(root, 'stale-lab-dead02')]);
    expect(readdirSync(root).sort()).toEqual(['lab-live01', 'stale-lab-dead01', 'stale-lab-dead02']);
    expect(readdirSync(join(root, 'stale-lab-dead01'))).toEqual(['lab.json']);
    expect(existsSync(join(root, 'lab-dead01'))).toBe(false);
  });
});
