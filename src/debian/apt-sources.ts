import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { TcelabError } from '../util/errors.js';

/**
 * Finds the Debian mirror this host's apt already uses, so that the private
 * guest apt configuration reaches the same (possibly local or proxied) mirror
 * without tcelab naming any host itself. TCELAB_DEBIAN_MIRROR overrides.
 */
export interface AptSource {
  uri: string;
  suites: string[];
}

/** Parses deb822 (.sources) and one-line (.list) formats. */
export function parseAptSources(text: string, format: 'deb822' | 'list'): AptSource[] {
  const out: AptSource[] = [];
  if (format === 'list') {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m) out.push({ uri: m[1]!, suites: [m[2]!] });
    }
    return out;
  }
  for (const para of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    for (const raw of para.split('\n')) {
      if (raw.startsWith('#')) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (m) fields[m[1]!.toLowerCase()] = m[2]!.trim();
    }
    if (fields.enabled === 'no') continue;
    if (!(fields.types ?? '').split(/\s+/).includes('deb') || !fields.uris) continue;
    for (const uri of fields.uris.split(/\s+/)) out.push({ uri, suites: (fields.suites ?? '').split(/\s+/).filter(Boolean) });
  }
  return out;
}

/** The URI of the main Debian archive (not -security, not third-party). */
export function pickDebianMirror(sources: AptSource[]): string | undefined {
  const isDebianSuite = (s: string) => /^(bookworm|trixie|forky|sid|stable|testing|unstable|bullseye)(-updates)?$/.test(s);
  const hit = sources.find((s) => !/security/.test(s.uri) && s.suites.some(isDebianSuite));
  return hit?.uri.replace(/\/+$/, '');
}

export function hostDebianMirror(env: NodeJS.ProcessEnv = process.env, etc = '/etc/apt'): string {
  if (env.TCELAB_DEBIAN_MIRROR) return env.TCELAB_DEBIAN_MIRROR.replace(/\/+$/, '');
  const sources: AptSource[] = [];
  const main = join(etc, 'sources.list');
  if (existsSync(main)) sources.push(...parseAptSources(readFileSync(main, 'utf8'), 'list'));
  const dir = join(etc, 'sources.list.d');
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) {
      if (f.endsWith('.sources')) sources.push(...parseAptSources(readFileSync(join(dir, f), 'utf8'), 'deb822'));
      else if (f.endsWith('.list')) sources.push(...parseAptSources(readFileSync(join(dir, f), 'utf8'), 'list'));
    }
  }
  const mirror = pickDebianMirror(sources);
  if (!mirror) {
    throw new TcelabError(
      'find a Debian mirror',
      `no Debian archive in ${etc}/sources.list{,.d}`,
      'set TCELAB_DEBIAN_MIRROR to a Debian mirror URI that serves trixie for ppc64el',
    );
  }
  return mirror;
}
