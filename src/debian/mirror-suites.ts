import { open } from 'node:fs/promises';

/**
 * Which Debian suites a mirror serves for an architecture, asked of the mirror itself: a mirror lists no
 * directory (the mirror answers 404 for dists/), so the Release files of Debian's suite aliases are read, each
 * naming its codename and architectures, and then the backports of the releases that have them.
 */
export interface ReleaseHead {
  suite?: string;
  codename?: string;
  architectures: string[];
}

/** The fields of a Release file's head that say what it is. */
export function parseReleaseHead(text: string): ReleaseHead {
  const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*\\S)`, 'm').exec(text)?.[1];
  return { suite: field('Suite'), codename: field('Codename'), architectures: (field('Architectures') ?? '').split(/\s+/).filter(Boolean) };
}

/**
 * Debian's suite aliases, oldest first, and how each is named to a user: by its codename (trixie, sid), except
 * experimental, whose codename (rc-buggy) nobody types. backports: the release has <codename>-backports.
 */
const SUITE_ALIASES: Array<{ dist: string; backports: boolean; name?: string }> = [
  { dist: 'oldoldstable', backports: true },
  { dist: 'oldstable', backports: true },
  { dist: 'stable', backports: true },
  { dist: 'testing', backports: true },
  { dist: 'unstable', backports: false },
  { dist: 'experimental', backports: false, name: 'experimental' },
];

/** Reads the head of dists/<dist>/Release on a mirror: its text, or undefined when the mirror answers that it has none. */
export type ReleaseReader = (mirror: string, dist: string) => Promise<string | undefined>;

/** What a mirror answered: the suites it has for the architecture, or why it could not be asked. */
export type MirrorSuites = { reached: true; suites: string[] } | { reached: false; why: string };

export async function mirrorSuites(mirror: string, arch: string, read: ReleaseReader = readReleaseHead): Promise<MirrorSuites> {
  try {
    const heads = await Promise.all(SUITE_ALIASES.map(async (a) => ({ alias: a, text: await read(mirror, a.dist) })));
    const releases = heads.flatMap(({ alias, text }) => {
      if (text === undefined) return [];
      const head = parseReleaseHead(text);
      const name = alias.name ?? head.codename ?? alias.dist;
      return [{ alias, name, head }];
    });
    const withBackports = await Promise.all(
      releases.map(async (r) => {
        const backports = r.alias.backports ? `${r.name}-backports` : undefined;
        const text = backports ? await read(mirror, backports) : undefined;
        return [
          { name: r.name, head: r.head },
          ...(backports && text !== undefined ? [{ name: backports, head: parseReleaseHead(text) }] : []),
        ];
      }),
    );
    return { reached: true, suites: withBackports.flat().flatMap((s) => (s.head.architectures.includes(arch) ? [s.name] : [])) };
  } catch (err) {
    return { reached: false, why: (err as Error).message };
  }
}

/** A Release file's head is its first few KiB: the checksums that follow are not read. */
const HEAD_BYTES = 16 * 1024;

/** How long one Release may take to come: a ceiling, not a wait (the answer ends it). */
const RELEASE_CEILING_MS = 15_000;

/** http(s) mirrors through fetch, file: mirrors from the file system; a 404 (or a missing file) is undefined. */
export async function readReleaseHead(mirror: string, dist: string): Promise<string | undefined> {
  const url = `${mirror}/dists/${dist}/Release`;
  if (url.startsWith('file:')) {
    const file = await open(new URL(url)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!file) return undefined;
    try {
      const buf = Buffer.alloc(HEAD_BYTES);
      const { bytesRead } = await file.read(buf, 0, HEAD_BYTES, 0);
      return buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await file.close();
    }
  }
  if (!/^https?:/.test(url)) throw new Error(`tcelab reads only http, https and file mirrors, not ${mirror}`);
  const res = await fetch(url, { signal: AbortSignal.timeout(RELEASE_CEILING_MS) });
  if (res.status === 404 || res.status === 410) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new Error(`${url} answered HTTP ${res.status}`);
  }
  // Only the head is read: a Release file is up to ~200 KB of checksums.
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < HEAD_BYTES) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  await reader.cancel();
  return Buffer.concat(chunks).toString('utf8');
}
