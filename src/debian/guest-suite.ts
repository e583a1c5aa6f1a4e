import { join } from 'node:path';

/** The guest userland's Debian suite (and the default kernel's). */
export const USERLAND_SUITE = 'trixie';
/** The guest's Debian architecture. */
export const USERLAND_ARCH = 'ppc64el';

/** The private apt of a Debian suite in the cache (trixie's is the userland's). */
export const suiteAptRoot = (cache: string, suite: string) => join(cache, 'guest', suite === USERLAND_SUITE ? 'apt' : `apt-${suite}`);

export const MIRROR_HINT = 'check that the Debian mirror is reachable; set TCELAB_DEBIAN_MIRROR to use another one';

/** The first package whose file the mirror does not serve (HEAD), or undefined: a mirror's index can be ahead of its pool. */
export async function firstNotServed<P extends { filename: string }>(mirror: string, packages: P[]): Promise<P | undefined> {
  for (const p of packages) {
    const r = await fetch(`${mirror}/${p.filename}`, { method: 'HEAD' }).catch(() => undefined);
    // Unreachable: not a verdict on this version; the download says what failed.
    if (r && r.status === 404) return p;
  }
  return undefined;
}
