import { availableParallelism } from 'node:os';
import type { TestProject } from 'vitest/node';
import { liveLabQemuPids } from './helpers/processes.js';
import { TEST_ROOT_PREFIX } from './helpers/lab.js';
import { measureFloorSamples, suiteTimeLine } from './suite-floor.js';

/**
 * The suite must leave no QEMU behind: checked once more after every file ran.
 * Only labs under the tests' own runtime roots count: a developer's `tcelab up`
 * or another suite on the same machine is none of this suite's business.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // A whole suite (no file named on the command line) tells its time in this machine's floors.
  const whole = process.argv.slice(2).every((a) => a.startsWith('-') || a === 'run');
  // As many boots at once as the machine has CPUs to run them (a CPU quota below that is the slowness the floor must
  // show), and no more than the files vitest runs at once (vitest.config.ts: maxWorkers, 1 without file parallelism):
  // more files at once than CPUs must not make the floor slower, or the suite would look faster in floors than it is.
  const parallel = Math.min(project.config.maxWorkers, availableParallelism());
  const measuring = Date.now();
  const atStart = whole ? await measureFloorSamples(parallel) : undefined;
  // The suite's time is its files': from here to the last file's end. Measuring the floor is the ruler, not the suite:
  // its boots before the first file and after the last are timed and printed, not counted in it.
  const started = Date.now();
  const measuredStartMs = started - measuring;
  return async () => {
    const suiteMs = Date.now() - started;
    const left = liveLabQemuPids(TEST_ROOT_PREFIX);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    if (atStart) {
      const measuringEnd = Date.now();
      const atEnd = await measureFloorSamples(parallel);
      const measuredMs = { atStart: measuredStartMs, atEnd: Date.now() - measuringEnd };
      process.stdout.write(`${suiteTimeLine(suiteMs, atStart, atEnd, parallel, project.config.maxWorkers, measuredMs)}\n`);
    }
    // What the run wrote (its scratch, its runtime roots) is taken away or kept by test/summary-reporter.ts.
    if (left.length > 0) throw new Error(`QEMU processes left behind by the suite: ${left.join(', ')}`);
  };
}
