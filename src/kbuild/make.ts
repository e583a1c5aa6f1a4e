import { spawn } from 'node:child_process';
import { TcelabError } from '../util/errors.js';

/** Cross-compiling for the guest: Debian's ppc64el cross toolchain, the kernel's ARCH. */
export const CROSS = { ARCH: 'powerpc', CROSS_COMPILE: 'powerpc64le-linux-gnu-' } as const;

export const KBUILD_HINT =
  'install the kernel build tools (scripts/bootstrap.sh installs flex, bison, bc, libelf-dev, libssl-dev, kmod and gcc-powerpc64le-linux-gnu)';

/**
 * Runs make in a kernel tree. The compiler's own lines are what a failure shows (the last of stderr, where make and
 * gcc write errors); `onLine` sees every line of output as it comes (progress).
 */
export function kmake(
  args: string[],
  opts: { cwd: string; what: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void; hint?: string },
): Promise<{ output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('make', [`ARCH=${CROSS.ARCH}`, `CROSS_COMPILE=${CROSS.CROSS_COMPILE}`, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    const errors: string[] = [];
    let partial = '';
    const take = (chunk: Buffer, into?: string[]) => {
      const text = partial + chunk.toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        into?.push(line);
        opts.onLine?.(line);
      }
    };
    child.stdout.on('data', (d: Buffer) => take(d));
    child.stderr.on('data', (d: Buffer) => take(d, errors));
    child.on('error', (e) => reject(new TcelabError(opts.what, e.message, KBUILD_HINT)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve({ output: lines.join('\n') });
      // The compiler's and make's own words: the error lines first, else the tail of everything.
      const said = errors.filter((l) => /error|Error|\*\*\*|undefined|fatal/.test(l));
      const shown = (said.length ? said : errors.length ? errors : lines).slice(-20).join('\n    ');
      reject(new TcelabError(opts.what, `make exited with ${signal ?? `code ${code}`}:\n    ${shown}`, opts.hint ?? KBUILD_HINT));
    });
  });
}
