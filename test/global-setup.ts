import { readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import type { TestProject } from 'vitest/node';
import { liveLabQemuPids } from './helpers/processes.js';
import { TEST_ROOT_PREFIX } from './helpers/lab.js';
import { measureFloorMs, suiteTimeLine } from './suite-floor.js';

/**
 * The suite must leave no QEMU behind: checked once more after every file ran.
 * Only labs under the tests' own runtime roots count: a developer's `tcelab up`
 * or another suite on the same machine is none of this suite's business.
 */
export default async function setup(project: TestProject): Promise<() => void> {
  // A whole suite (no file named on the command line) tells its time in this machine's floors.
  const whole = process.argv.slice(2).every((a) => a.startsWith('-') || a === 'run');
  const started = Date.now();
  // As many boots at once as the machine has CPUs to run them (a CPU quota below that is the slowness the floor must
  // show), and no more than the files vitest runs at once (vitest.config.ts: maxWorkers, 1 without file parallelism):
  // more files at once than CPUs must not make the floor slower, or the suite would look faster in floors than it is.
  const parallel = Math.min(project.config.maxWorkers, availableParallelism());
  const floorMs = whole ? await measureFloorMs(parallel) : undefined;
  return () => {
    if (floorMs) process.stdout.write(`${suiteTimeLine(Date.now() - started, floorMs, parallel, project.config.maxWorkers)}\n`);
    const left = liveLabQemuPids(TEST_ROOT_PREFIX);
    if (left.length > 0) {
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      throw new Error(`QEMU processes left behind by the suite: ${left.join(', ')}`);
    }
    // This run's runtime roots that ended empty are scratch; roots holding kept artifacts stay.
    const prefix = TEST_ROOT_PREFIX.split('/').pop()!;
    for (const name of readdirSync('/tmp')) {
      const dir = join('/tmp', name);
      if (name.startsWith(prefix) && readdirSync(dir).length === 0) rmdirSync(dir);
    }
  };
}
