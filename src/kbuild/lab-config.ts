import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseKernelConfig } from '../kernel/kernel-facts.js';
import { KCONFIG_OPTION, type KernelFlavour } from '../kernel/kernel-spec.js';
import { InputError, TcelabError } from '../util/errors.js';
import { packageRoot } from '../util/paths.js';

/**
 * The configuration of a kernel tcelab builds from source: `make allnoconfig` with KCONFIG_ALLCONFIG = the lab's
 * fragment (kernel-configs/lab.config: each option with why it is there), the page size, then the user's additions
 * (--kconfig-add, kconfig= of a spec), later lines winning. Every option asked for is checked in the resulting
 * .config: one that did not come out as asked is named (a dependency missing, a symbol renamed in that tree).
 */

/** The lab's fragment, a file users read. */
export const LAB_FRAGMENT = join(packageRoot, 'kernel-configs', 'lab.config');

/** One option asked for, and who asked: the lab's fragment or the user's addition (with the file and line). */
export interface AskedOption {
  name: string;
  /** y, m, n, a number or a string (unquoted). */
  value: string;
  by: 'lab' | 'user';
  /** Where it was asked: kernel-configs/lab.config:12, --kconfig-add, frag.config:3. */
  at: string;
}

/** The page-size choice of each flavour, asked like any lab option. */
const PAGE_SIZE_OPTION: Record<KernelFlavour, string> = {
  powerpc64le: 'CONFIG_PPC_4K_PAGES=y',
  'powerpc64le-64k': 'CONFIG_PPC_64K_PAGES=y',
};

/** Reads `CONFIG_X=v` lines (and `# CONFIG_X is not set` as n); anything else but comments and blank lines is refused. */
export function parseFragment(text: string, at: string, by: AskedOption['by'], field = '--kconfig-add'): AskedOption[] {
  const out: AskedOption[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const where = `${at}:${i + 1}`;
    const notSet = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (notSet) {
      out.push({ name: notSet[1]!, value: 'n', by, at: where });
      return;
    }
    if (!line || line.startsWith('#')) return;
    if (!KCONFIG_OPTION.test(line)) {
      const why = `line ${i + 1}: "${line}" is not CONFIG_X=y|m|n, a number or a "quoted string"`;
      if (by === 'user') throw new InputError(field, at, why);
      throw new TcelabError(`read the lab fragment ${at}`, why);
    }
    out.push(option(line, by, where));
  });
  return out;
}

function option(line: string, by: AskedOption['by'], at: string): AskedOption {
  const eq = line.indexOf('=');
  return { name: line.slice(0, eq), value: line.slice(eq + 1).replace(/^"(.*)"$/, '$1'), by, at };
}

/** The options a configuration asks for, in order: the lab's, the page size, the user's (options as they are, files read). */
export async function askedOptions(flavour: KernelFlavour, additions: string[], field = '--kconfig-add'): Promise<AskedOption[]> {
  const lab = parseFragment(await readFile(LAB_FRAGMENT, 'utf8'), 'kernel-configs/lab.config', 'lab');
  const pages = option(PAGE_SIZE_OPTION[flavour], 'lab', `the page size (${flavour === 'powerpc64le-64k' ? '64k' : '4k'})`);
  const user: AskedOption[] = [];
  for (const a of additions) {
    if (a.startsWith('CONFIG_')) user.push(option(a, 'user', field));
    else {
      const text = await readFile(a, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new InputError(field, a, `cannot read the fragment: ${err.code ?? err.message}`);
      });
      user.push(...parseFragment(text, a, 'user', field));
    }
  }
  return [...lab, pages, ...user];
}

/** The KCONFIG_ALLCONFIG text of a configuration: what allnoconfig starts from (a later line wins). */
export function allconfigText(asked: AskedOption[]): string {
  return `${asked.map((o) => `${o.name}=${/^(y|m|n|-?\d+|0x[0-9a-fA-F]+)$/.test(o.value) ? o.value : `"${o.value}"`}`).join('\n')}\n`;
}

/** An option that did not come out as asked: what was asked, where, and what the tree's Kconfig gave. */
export interface UnmetOption {
  asked: AskedOption;
  got: string;
}

/**
 * The options the resulting .config does not have as asked (the last asking wins, as in KCONFIG_ALLCONFIG): a
 * dependency the tree does not meet, or a symbol this tree does not know (renamed, or not there yet).
 */
export function unmetOptions(asked: AskedOption[], configText: string): UnmetOption[] {
  const config = parseKernelConfig(configText);
  const last = new Map(asked.map((o) => [o.name, o]));
  const out: UnmetOption[] = [];
  for (const o of last.values()) {
    const got = config.get(o.name.replace(/^CONFIG_/, ''));
    const ok = o.value === 'n' ? got === undefined || got === 'n' : got === o.value;
    if (!ok) out.push({ asked: o, got: got ?? 'not set' });
  }
  return out;
}

/**
 * Unmet options as the error a user sees before any lab starts: bad input (exit 2) when one is the user's own
 * addition, else a TcelabError naming the lab's options this tree cannot give.
 */
export function unmetOptionsError(unmet: UnmetOption[], tree: string, field = '--kconfig-add'): TcelabError {
  const said = unmet.map((u) => `${u.asked.name}=${u.asked.value} (${u.asked.at}) came out ${u.got}`).join('; ');
  const hint =
    'an option that comes out "not set" either depends on an option that is off (look for it in the tree with ' +
    '`make menuconfig` and its "Depends on") or is not a symbol of this tree (renamed or not there yet)';
  const user = unmet.filter((u) => u.asked.by === 'user');
  const named = user.map((u) => (u.asked.at === field ? `${u.asked.name}=${u.asked.value}` : u.asked.at)).join(', ');
  if (user.length) return new InputError(field, named, `${tree}: ${said}`, hint);
  return new TcelabError(`configure ${tree} for the lab`, said, hint);
}
