/**
 * Debian version comparison (deb-version(7)): epoch, upstream, revision; '~'
 * sorts before everything, letters before non-letters. Used to pick the newest
 * of several linux-image-6.12.* packages without hard-coding any version.
 */
export function compareDebianVersions(a: string, b: string): number {
  const pa = split(a);
  const pb = split(b);
  if (pa.epoch !== pb.epoch) return pa.epoch < pb.epoch ? -1 : 1;
  return comparePart(pa.upstream, pb.upstream) || comparePart(pa.revision, pb.revision);
}

function split(v: string): { epoch: number; upstream: string; revision: string } {
  let rest = v;
  let epoch = 0;
  const colon = rest.indexOf(':');
  if (colon >= 0) {
    epoch = Number(rest.slice(0, colon)) || 0;
    rest = rest.slice(colon + 1);
  }
  const dash = rest.lastIndexOf('-');
  return dash >= 0 ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) } : { epoch, upstream: rest, revision: '0' };
}

function order(c: string): number {
  if (c === '~') return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // Non-digit prefix, character by character.
    while ((i < a.length && !isDigit(a[i]!)) || (j < b.length && !isDigit(b[j]!))) {
      const ca = i < a.length && !isDigit(a[i]!) ? order(a[i]!) : 0;
      const cb = j < b.length && !isDigit(b[j]!) ? order(b[j]!) : 0;
      if (ca !== cb) return ca < cb ? -1 : 1;
      if (i < a.length && !isDigit(a[i]!)) i++;
      if (j < b.length && !isDigit(b[j]!)) j++;
    }
    let na = '';
    let nb = '';
    while (i < a.length && isDigit(a[i]!)) na += a[i++];
    while (j < b.length && isDigit(b[j]!)) nb += b[j++];
    const da = BigInt(na || '0');
    const db = BigInt(nb || '0');
    if (da !== db) return da < db ? -1 : 1;
  }
  return 0;
}

function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}
