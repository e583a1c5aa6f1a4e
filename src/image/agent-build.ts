import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from '../util/exec.js';
import { TcelabError } from '../util/errors.js';
import { guestSourceDir } from '../util/paths.js';
import { EM_PPC64, readElfDeps } from './elf.js';

const CROSS_CC = 'powerpc64le-linux-gnu-gcc';

/**
 * Builds the guest agent with its own Makefile (guest/agent/Makefile, the cross compiler); undefined when there is no
 * agent source. A build is kept in the cache under the hash of its sources and the compiler's version: every image
 * (each kernel, each variant) carries the same agent, and a local kernel's image then costs no compile (3.3 s measured).
 */
export async function buildAgent(work: string, cache: string): Promise<Buffer | undefined> {
  const sources = await listAgentSources();
  if (!sources.some((f) => f.endsWith('.c'))) return undefined;
  const kept = join(cache, 'guest', 'agent', `${await agentKey(sources)}.bin`);
  if (existsSync(kept)) return checkedAgent(await readFile(kept));
  const out = join(work, 'tcelab-agent');
  await run('make', ['-s', '-C', join(guestSourceDir, 'agent'), `OUT=${out}`, `CC=${CROSS_CC}`], {
    what: 'cross-compile the guest agent (make in guest/agent)',
    hint: 'install make and gcc-powerpc64le-linux-gnu (scripts/bootstrap.sh does)',
  });
  const bin = checkedAgent(await readFile(out));
  await mkdir(dirname(kept), { recursive: true });
  // Written whole, then renamed: a concurrent build never reads half an agent.
  await writeFile(`${kept}.${process.pid}`, bin);
  await rename(`${kept}.${process.pid}`, kept);
  return bin;
}

function checkedAgent(bin: Buffer): Buffer {
  const deps = readElfDeps(bin);
  if (deps.machine !== EM_PPC64 || deps.interpreter) {
    throw new TcelabError('guest agent', 'is not a static ppc64le executable');
  }
  return bin;
}

/** The agent's sources and the cross compiler's version, hashed: what makes one agent build differ from another. */
async function agentKey(sources: string[]): Promise<string> {
  const h = createHash('sha256');
  h.update('agent-build-1\n');
  const { stdout } = await run(CROSS_CC, ['--version'], {
    what: `ask ${CROSS_CC} its version`,
    hint: 'install gcc-powerpc64le-linux-gnu (scripts/bootstrap.sh does)',
  });
  h.update(stdout);
  for (const f of sources) {
    h.update(`${f}\n`);
    h.update(await readFile(join(guestSourceDir, 'agent', f)));
  }
  return h.digest('hex').slice(0, 32);
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
