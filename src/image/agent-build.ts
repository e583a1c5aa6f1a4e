import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { TcelabError } from '../util/errors.js';
import { guestSourceDir } from '../util/paths.js';
import { EM_PPC64, readElfDeps } from './elf.js';

/** Builds the guest agent with its own Makefile (guest/agent/Makefile, the cross compiler); undefined when there is no agent source. */
export async function buildAgent(work: string): Promise<Buffer | undefined> {
  const sources = (await listAgentSources()).filter((f) => f.endsWith('.c'));
  if (sources.length === 0) return undefined;
  const out = join(work, 'tcelab-agent');
  await run('make', ['-s', '-C', join(guestSourceDir, 'agent'), `OUT=${out}`, 'CC=powerpc64le-linux-gnu-gcc'], {
    what: 'cross-compile the guest agent (make in guest/agent)',
    hint: 'install make and gcc-powerpc64le-linux-gnu (scripts/bootstrap.sh does)',
  });
  const bin = await readFile(out);
  const deps = readElfDeps(bin);
  if (deps.machine !== EM_PPC64 || deps.interpreter) {
    throw new TcelabError('guest agent', 'is not a static ppc64le executable');
  }
  return bin;
}

/** Headers outside guest/agent that the agent includes, relative to it: the ioctl ABI of the tcelab_hcall module. */
const AGENT_SHARED_HEADERS = ['../hcall/tcelab_hcall.h'];

/**
 * The agent's sources relative to guest/agent (its C files, headers and Makefile, then the headers it shares with
 * guest/hcall), sorted; none without the directory.
 */
export async function listAgentSources(): Promise<string[]> {
  const dir = join(guestSourceDir, 'agent');
  if (!existsSync(dir)) return [];
  const own = (await readdir(dir)).filter((f) => /\.(c|h)$/.test(f) || f === 'Makefile');
  return [...own, ...AGENT_SHARED_HEADERS.filter((f) => existsSync(join(dir, f)))].sort();
}
