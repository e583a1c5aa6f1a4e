import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseKernelConfig } from '../kernel/kernel-facts.js';
import { run } from '../util/exec.js';
import { withLock } from '../util/lock.js';
import type { Progress } from '../util/progress.js';
import type { KernelSourceTree } from './kernel-source.js';
import { CROSS, KBUILD_HINT, kmake } from './make.js';

/**
 * A kernel tree prepared for building modules against a kernel that was built elsewhere (Debian's): the kernel's
 * own config, `modules_prepare` with its release, and its Module.symvers (the symbol CRCs its modules must carry).
 */
export interface ModuleBuildTree {
  source: KernelSourceTree;
  /** The O= directory. */
  out: string;
  release: string;
  /** The vermagic every module of the kernel carries: a module built here must carry the same. */
  vermagic: string;
  /**
   * Options the kernel was built with that `olddefconfig` dropped here, because they depend on what this machine's
   * cross compiler can do (Debian builds with a newer gcc and pahole): they are forced back for modules, or the
   * module's vermagic and `struct module` differ from the kernel's (FINDINGS: "An out-of-tree guest module").
   */
  forced: string[];
  /** KCFLAGS that force them. */
  kcflags: string;
  /** How long preparing took (0 when it was cached). */
  preparedMs: number;
  /** What identifies the tree's content when its O= dir can hold another build later (a kernel built from source). */
  key?: string;
}

/** What a tree is prepared from: the source, the kernel's config, release, vermagic and Module.symvers. */
export interface KernelBuildInputs {
  source: KernelSourceTree;
  configText: string;
  release: string;
  vermagic: string;
  symvers: Buffer;
}

const FORMAT = 2;

/** The compiler's version line: a tree prepared with another compiler is another tree. */
export async function crossCompilerVersion(): Promise<string> {
  const { stdout } = await run(`${CROSS.CROSS_COMPILE}gcc`, ['--version'], {
    what: 'ask the cross compiler its version',
    hint: KBUILD_HINT,
  });
  return stdout.split('\n')[0]!.trim();
}

/**
 * The options set to y in the kernel's config that are absent or not set in `prepared` (after olddefconfig), but for
 * what only says what a tool can do (CC_HAS_*, PAHOLE_HAS_*, GCC_*, AS_*, LD_*, TOOLS_*): forcing those would ask this
 * compiler for what it lacks, and they change no layout the kernel and a module share.
 */
export function droppedOptions(kernelConfig: string, prepared: string): string[] {
  const want = parseKernelConfig(kernelConfig);
  const have = parseKernelConfig(prepared);
  return [...want].filter(([k, v]) => v === 'y' && have.get(k) !== 'y' && !TOOL_CAPABILITY.test(k)).map(([k]) => k);
}

const TOOL_CAPABILITY = /^(CC_HAS_|CC_CAN_|PAHOLE_HAS_|GCC_|AS_HAS_|LD_HAS_|LD_CAN_|TOOLS_SUPPORT_)/;

/** Prepares (once; cached by its inputs and the compiler) a tree to build modules for this kernel. */
export async function prepareModuleTree(inputs: KernelBuildInputs, cache: string, progress: Progress): Promise<ModuleBuildTree> {
  const compiler = await crossCompilerVersion();
  const key = createHash('sha256')
    .update(JSON.stringify({ FORMAT, source: inputs.source.key, release: inputs.release, compiler }))
    .update(inputs.configText)
    .update(inputs.symvers)
    .digest('hex')
    .slice(0, 16);
  const out = join(cache, 'kernel-build', 'module-trees', `${inputs.release}-${key}`);
  const record = join(out, 'tcelab-tree.json');
  const cached = async (): Promise<ModuleBuildTree> => ({ ...JSON.parse(await readFile(record, 'utf8')), preparedMs: 0 });
  if (existsSync(record)) return cached();
  await mkdir(join(cache, 'kernel-build', 'module-trees'), { recursive: true });
  return withLock(`${out}.lock`, `prepare ${inputs.source.describe} for modules of ${inputs.release}`, progress, async () => {
    if (existsSync(record)) return cached();
    const t0 = Date.now();
    // Prepared in place (kbuild records absolute paths): a tree without its record is an interrupted one, started over.
    const dir = out;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '.config'), inputs.configText);
    const make = (what: string, args: string[], update?: (d: string) => void) =>
      kmake(['-C', inputs.source.dir, `O=${dir}`, ...args], {
        cwd: inputs.source.dir,
        what,
        onLine: update && ((l) => update(l.trim().slice(0, 80))),
      });
    await progress.step(`configure ${inputs.source.describe} with ${inputs.release}'s config`, () =>
      make(`make olddefconfig in ${inputs.source.describe}`, ['olddefconfig']),
    );
    const forced = droppedOptions(inputs.configText, await readFile(join(dir, '.config'), 'utf8'));
    if (forced.length)
      progress.info(
        `this cross compiler (${compiler}) cannot give ${forced.length} options the kernel has; forced for modules: ${forced.join(', ')}`,
      );
    const kcflags = forced.map((o) => `-DCONFIG_${o}=1`).join(' ');
    await progress.step(`make modules_prepare (${inputs.release})`, (update) =>
      make(
        `make modules_prepare in ${inputs.source.describe}`,
        [`KERNELRELEASE=${inputs.release}`, `KCFLAGS=${kcflags}`, `-j${availableParallelism()}`, 'modules_prepare'],
        update,
      ),
    );
    await writeFile(join(dir, 'Module.symvers'), inputs.symvers);
    const tree: ModuleBuildTree = {
      source: inputs.source,
      out,
      release: inputs.release,
      vermagic: inputs.vermagic,
      forced,
      kcflags,
      preparedMs: 0,
    };
    await writeFile(record, `${JSON.stringify(tree, null, 2)}\n`);
    return { ...tree, preparedMs: Date.now() - t0 };
  });
}
