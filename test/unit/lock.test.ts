import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withLock } from '../../src/util/lock.js';
import { silentProgress } from '../../src/util/progress.js';
import { scratchDir } from '../helpers/scratch.js';

const said: string[] = [];
const progress = { ...silentProgress, info: (line: string) => said.push(line) };

describe('withLock: one holder at a time across processes', () => {
  it('runs holders one after another, and says whom a waiter waits for', async () => {
    const dir = join(scratchDir('lock'), 'l.lock');
    const order: string[] = [];
    const slow = withLock(dir, 'stage X', progress, async () => {
      order.push('a in');
      await new Promise((r) => setTimeout(r, 700));
      order.push('a out');
    });
    await new Promise((r) => setTimeout(r, 50));
    await withLock(dir, 'stage X', progress, async () => {
      order.push('b');
    });
    await slow;
    expect(order).toEqual(['a in', 'a out', 'b']);
    expect(said).toContain(`stage X: waiting for pid ${process.pid}, which is doing it already`);
    expect(existsSync(dir)).toBe(false);
  });

  it('takes over a lock whose holder died', async () => {
    const dir = join(scratchDir('lock'), 'l.lock');
    mkdirSync(dir);
    const dead = spawnSync('true').pid!;
    writeFileSync(join(dir, 'pid'), `${dead}\n`);
    let ran = false;
    await withLock(dir, 'stage Y', progress, async () => {
      ran = true;
    });
    expect(ran).toBe(true);
  });

  it('gives the lock back when the holder fails', async () => {
    const dir = join(scratchDir('lock'), 'l.lock');
    await expect(withLock(dir, 'stage Z', progress, async () => Promise.reject(new Error('mirror down')))).rejects.toThrow('mirror down');
    expect(existsSync(dir)).toBe(false);
  });
});
