/** A Debian binary package as a Packages index (or `apt-cache show`) describes it. */
export interface DebPackage {
  name: string;
  version: string;
  architecture: string;
  filename: string;
  sha256: string;
  size: number;
  depends: string[][];
}

/** The file name of a downloaded package (apt-get download's: the epoch's colon escaped as %3a). */
export function debFileName(pkg: DebPackage): string {
  return `${pkg.name}_${pkg.version.replace(/:/g, '%3a')}_${pkg.architecture}.deb`;
}

/** Parses deb822 paragraphs of a Packages index (or `apt-cache show` output). */
export function parsePackagesIndex(text: string): DebPackage[] {
  const out: DebPackage[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const f: Record<string, string> = {};
    let last = '';
    for (const line of para.split('\n')) {
      if (/^\s/.test(line) && last) {
        f[last] += `\n${line.trim()}`;
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line);
      if (m) {
        last = m[1]!;
        f[last] = m[2]!;
      }
    }
    if (!f.Package || !f.Version) continue;
    const deps = [f['Pre-Depends'], f.Depends].filter(Boolean).join(', ');
    out.push({
      name: f.Package,
      version: f.Version,
      architecture: f.Architecture ?? '',
      filename: f.Filename ?? '',
      sha256: f.SHA256 ?? '',
      size: Number(f.Size ?? 0),
      depends: deps
        ? deps
            .split(',')
            .map((group) =>
              group.split('|').map((alt) =>
                alt
                  .trim()
                  .replace(/\s*\(.*\)$/, '')
                  .replace(/:any$/, ''),
              ),
            )
            .filter((g) => g[0])
        : [],
    });
  }
  return out;
}
