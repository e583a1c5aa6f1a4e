/**
 * Maps every value of a JSON text to the line it starts on, keyed by the same
 * path syntax the validator uses (`steps[2].sizeMiB`), so that an error about
 * a field can say where in the file it is.
 */
export function jsonPathLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let i = 0;
  let line = 1;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) {
      if (text[i] === '\n') line++;
      i++;
    }
  };
  const str = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    ws();
    lines.set(path, line);
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const key = str();
        ws();
        i++; // ':'
        value(path ? `${path}.${key}` : key);
        ws();
        if (text[i++] === '}') return;
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        value(`${path}[${n}]`);
        ws();
        if (text[i++] === ']') return;
      }
    } else if (c === '"') {
      str();
    } else {
      while (i < text.length && /[^,\]}\s]/.test(text[i]!)) i++;
    }
  };
  try {
    value('');
  } catch {
    // Only called on text JSON.parse accepted; a failure here just means fewer lines known.
  }
  return lines;
}

/** The line of `field` or of its nearest parent that has one. */
export function lineOf(lines: Map<string, number>, field: string): number | undefined {
  let f = field;
  for (;;) {
    const l = lines.get(f);
    if (l !== undefined) return l;
    const cut = Math.max(f.lastIndexOf('.'), f.lastIndexOf('['));
    if (cut <= 0) return lines.get('');
    f = f.slice(0, cut);
  }
}
