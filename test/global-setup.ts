import { liveLabQemuPids } from './helpers/processes.js';

/** The suite must leave no QEMU behind: checked once more after every file ran. */
export default function setup(): () => void {
  return () => {
    const left = liveLabQemuPids();
    if (left.length > 0) {
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      throw new Error(`QEMU processes left behind by the suite: ${left.join(', ')}`);
    }
  };
}
