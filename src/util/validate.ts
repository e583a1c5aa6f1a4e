import { InputError } from './errors.js';

/**
 * A tiny declarative validator for user-written JSON (profiles, scenarios).
 * Errors name the field by its path (`devices[1].phb`) and reject unknown
 * fields, so a typo never silently falls back to a default.
 */
export type Spec =
  | { type: 'string'; pattern?: RegExp; patternHint?: string; enum?: readonly string[]; optional?: boolean; default?: string }
  | { type: 'integer'; min: number; max: number; multipleOf?: number; multipleHint?: string; optional?: boolean; default?: number }
  | { type: 'boolean'; optional?: boolean; default?: boolean }
  | { type: 'array'; items: Spec; maxItems: number; optional?: boolean; default?: unknown[] }
  | { type: 'object'; fields: Record<string, Spec>; optional?: boolean }
  | { type: 'map'; values: Spec; optional?: boolean }
  | { type: 'scalar'; optional?: boolean };

/** The value a Spec accepts, as a type: a table of specs declared `as const` gives its readers typed fields. */
export type Infer<S> = S extends { type: 'string'; enum: readonly (infer E)[] }
  ? E
  : S extends { type: 'string' }
    ? string
    : S extends { type: 'integer' }
      ? number
      : S extends { type: 'boolean' }
        ? boolean
        : S extends { type: 'array'; items: infer I }
          ? Infer<I>[]
          : S extends { type: 'map'; values: infer V }
            ? Record<string, Infer<V>>
            : S extends { type: 'scalar' }
              ? string | number | boolean
              : S extends { type: 'object'; fields: infer F }
                ? InferFields<F>
                : never;

/** An object's fields: the ones marked optional may be absent. */
export type InferFields<F> = { [K in keyof F as F[K] extends { optional: true } ? never : K]: Infer<F[K]> } & {
  [K in keyof F as F[K] extends { optional: true } ? K : never]?: Infer<F[K]>;
};

export class Validator {
  constructor(private readonly source: string) {}

  check(value: unknown, spec: Spec, path = ''): unknown {
    const where = path || '(top level)';
    switch (spec.type) {
      case 'string': {
        if (typeof value !== 'string') throw this.err(where, `must be a string, got ${describe(value)}`);
        if (spec.enum && !spec.enum.includes(value)) {
          throw this.err(where, `must be one of ${spec.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(value)}`);
        }
        if (spec.pattern && !spec.pattern.test(value)) {
          throw this.err(where, `${JSON.stringify(value)} is not valid${spec.patternHint ? `: ${spec.patternHint}` : ''}`);
        }
        if (value.length > 4096) throw this.err(where, `is ${value.length} characters long; at most 4096`);
        return value;
      }
      case 'integer': {
        if (typeof value !== 'number' || !Number.isInteger(value)) throw this.err(where, `must be an integer, got ${describe(value)}`);
        if (value < spec.min || value > spec.max) throw this.err(where, `must be between ${spec.min} and ${spec.max}, got ${value}`);
        if (spec.multipleOf && value % spec.multipleOf !== 0)
          throw this.err(
            where,
            `must be a multiple of ${spec.multipleOf}${spec.multipleHint ? ` (${spec.multipleHint})` : ''}, got ${value}`,
          );
        return value;
      }
      case 'boolean': {
        if (typeof value !== 'boolean') throw this.err(where, `must be true or false, got ${describe(value)}`);
        return value;
      }
      case 'array': {
        if (!Array.isArray(value)) throw this.err(where, `must be an array, got ${describe(value)}`);
        if (value.length > spec.maxItems) throw this.err(where, `has ${value.length} entries; at most ${spec.maxItems}`);
        return value.map((v, i) => this.check(v, spec.items, `${path}[${i}]`));
      }
      case 'scalar': {
        if (!['string', 'number', 'boolean'].includes(typeof value))
          throw this.err(where, `must be a string, number or boolean, got ${describe(value)}`);
        if (typeof value === 'number' && !Number.isFinite(value)) throw this.err(where, 'must be a finite number');
        if (typeof value === 'string' && value.length > 4096) throw this.err(where, 'is too long');
        return value;
      }
      case 'map': {
        if (!isPlainObject(value)) throw this.err(where, `must be an object, got ${describe(value)}`);
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) out[k] = this.check(v, spec.values, path ? `${path}.${k}` : k);
        return out;
      }
      case 'object': {
        if (!isPlainObject(value)) throw this.err(where, `must be an object, got ${describe(value)}`);
        const out: Record<string, unknown> = {};
        for (const key of Object.keys(value)) {
          if (!(key in spec.fields)) {
            const known = Object.keys(spec.fields).join(', ');
            throw this.err(path ? `${path}.${key}` : key, `is not a known field (known: ${known})`);
          }
        }
        for (const [key, fieldSpec] of Object.entries(spec.fields)) {
          const childPath = path ? `${path}.${key}` : key;
          const v = (value as Record<string, unknown>)[key];
          if (v === undefined) {
            if ('default' in fieldSpec && fieldSpec.default !== undefined) out[key] = structuredClone(fieldSpec.default);
            // A required object whose fields all have defaults may be left out.
            else if (fieldSpec.type === 'object' && !fieldSpec.optional) out[key] = this.check({}, fieldSpec, childPath);
            else if (!fieldSpec.optional) throw this.err(childPath, 'is required');
            continue;
          }
          out[key] = this.check(v, fieldSpec, childPath);
        }
        return out;
      }
    }
  }

  err(field: string, why: string): InputError {
    return new InputError(this.source, field, why);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${typeof v === 'object' ? '' : JSON.stringify(v)}`.trim();
}

/** JSON.parse with the error turned into `line L, column C` of the source. */
export function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message;
    const m = /position (\d+)/.exec(msg);
    let where = 'JSON';
    const at = m ? Number(m[1]) : jsonErrorOffset(text);
    if (at >= 0) {
      const pos = at;
      const before = text.slice(0, pos);
      const line = before.split('\n').length;
      const col = pos - before.lastIndexOf('\n');
      where = `line ${line}, column ${col}`;
    }
    throw new InputError(
      source,
      where,
      `is not valid JSON (${msg.replace(/ in JSON at position \d+.*$/, '').replace(/, (\.\.\.)?".*" is not valid JSON$/s, '')})`,
    );
  }
}

/** Replaces ${NAME} in every string with the environment's value; an unset variable is an error naming the field. */
export function substituteVariables(value: unknown, env: NodeJS.ProcessEnv, source: string, path = ''): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_all, name: string) => {
      const v = env[name];
      if (v === undefined || v === '') {
        throw new InputError(
          source,
          path || '(top level)',
          `uses \${${name}}, which is not set in the environment`,
          `set ${name} before running (e.g. ${name}=... tcelab run ${source})`,
        );
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteVariables(v, env, source, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteVariables(v, env, source, path ? `${path}.${k}` : k);
    return out;
  }
  return value;
}

/**
 * Offset of the first syntax error in a JSON text (Node 20's JSON.parse
 * messages carry no position): a strict recursive-descent scan.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const lit = (w: string) => {
    if (!text.startsWith(w, i)) fail();
    i += w.length;
  };
  const str = () => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text.charCodeAt(i) < 0x20) fail();
      i += text[i] === '\\' ? 2 : 1;
    }
    if (text[i] !== '"') fail();
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        str();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail();
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else fail();
      }
    }
    if (c === '"') {
      str();
      return;
    }
    for (const word of ['true', 'false', 'null']) {
      if (c === word[0]) {
        lit(word);
        return;
      }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) fail();
    i += m![0].length;
  };
  try {
    value();
    ws();
    return i < text.length ? i : -1;
  } catch (at) {
    return typeof at === 'number' ? at : i;
  }
}
