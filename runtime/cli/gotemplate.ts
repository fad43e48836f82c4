/**
 * podman's `--format`: the subset of Go's text/template that podman users write, over plain JSON
 * values, with Go's own way of printing values (fmt's %v).
 *
 * Theory of operation
 * -------------------
 * A format is parsed once into nodes (text, actions, range/if/with blocks with else branches) and
 * executed against a value per row. Supported:
 *  - fields `.A.B` (a missing field prints `<no value>`, as Go's does for maps), `.` and `$`,
 *    variables from `{{range $k, $v := ...}}` / `{{$x := ...}}`;
 *  - string, number and boolean literals; pipelines `x | f` (the value becomes f's last argument);
 *  - functions: json, index, len, join, lower, upper, title, printf, print, println, truncate,
 *    contains, eq, ne, not, and, or;
 *  - `{{if}}`, `{{else}}`, `{{else if}}`, `{{with}}`, `{{range}}` (over lists and maps, maps in
 *    key order as Go sorts them), `{{end}}`, and `{{-`/`-}}` trimming.
 * As podman's report package does, a literal `\t` or `\n` typed in the format becomes a tab or a
 * newline, and a leading `table` asks for a header row and aligned columns ({@link renderRows}).
 * Errors name the position and what was wrong, never a stack.
 */

export class TemplateError extends Error {}

type Value = unknown;

interface Pipe {
  /** Variables declared (`$x :=`), if any. */
  decl: string[];
  cmds: Cmd[];
}
type Arg = { kind: 'field'; base: '.' | '$' | string; path: string[] } | { kind: 'lit'; value: Value } | { kind: 'ident'; name: string } | { kind: 'pipe'; pipe: Pipe; path: string[] };
type Cmd = Arg[];
type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipe: Pipe }
  | { kind: 'if' | 'with' | 'range'; pipe: Pipe; body: Node[]; alt: Node[] };

/** A literal backslash-t / backslash-n typed on the command line means tab / newline (podman's NormalizeFormat). */
export function normalizeFormat(format: string): string {
  return format.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
}

// ---- lexing and parsing ------------------------------------------------------------------------

function tokenize(src: string, at: number): string[] {
  const toks: string[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '"' || c === '`') {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === '\\' && c === '"' ? 2 : 1;
      if (j >= src.length) throw new TemplateError(`unterminated string at ${at + i}`);
      toks.push(src.slice(i, j + 1));
      i = j + 1;
      continue;
    }
    if (c === ')' && src[i + 1] === '.') {
      // (pipeline).Field: a field of the pipeline's value
      let j = i + 1;
      while (j < src.length && /[\w.]/.test(src[j])) j++;
      toks.push(src.slice(i, j));
      i = j;
      continue;
    }
    if (c === '(' || c === ')' || c === '|' || c === ',') {
      toks.push(c);
      i++;
      continue;
    }
    if (c === ':' && src[i + 1] === '=') {
      toks.push(':=');
      i += 2;
      continue;
    }
    let j = i;
    while (j < src.length && !/[\s()|,"`]/.test(src[j]) && !(src[j] === ':' && src[j + 1] === '=')) j++;
    toks.push(src.slice(i, j));
    i = j;
  }
  return toks;
}

function parseArg(tok: string, at: number): Arg {
  if (tok.startsWith('"')) return { kind: 'lit', value: JSON.parse(tok) };
  if (tok.startsWith('`')) return { kind: 'lit', value: tok.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(tok)) return { kind: 'lit', value: Number(tok) };
  if (tok === 'true' || tok === 'false') return { kind: 'lit', value: tok === 'true' };
  if (tok === 'nil') return { kind: 'lit', value: null };
  if (tok === '.') return { kind: 'field', base: '.', path: [] };
  if (tok.startsWith('.')) return { kind: 'field', base: '.', path: tok.slice(1).split('.') };
  if (tok.startsWith('$')) {
    const [base, ...path] = tok.split('.');
    return { kind: 'field', base, path };
  }
  if (/^[A-Za-z_]\w*$/.test(tok)) return { kind: 'ident', name: tok };
  throw new TemplateError(`unexpected "${tok}" at ${at}`);
}

function parsePipe(toks: string[], at: number): Pipe {
  let decl: string[] = [];
  const colon = toks.indexOf(':=');
  if (colon >= 0) {
    decl = toks.slice(0, colon).filter((t) => t !== ',');
    if (!decl.length || !decl.every((d) => /^\$\w*$/.test(d))) throw new TemplateError(`bad variable declaration at ${at}`);
    toks = toks.slice(colon + 1);
  }
  const cmds: Cmd[] = [];
  let cur: Cmd = [];
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    if (t === '|') {
      if (!cur.length) throw new TemplateError(`empty command before "|" at ${at}`);
      cmds.push(cur);
      cur = [];
    } else if (t === '(') {
      let depth = 1;
      let j = i + 1;
      for (; j < toks.length && depth; j++) depth += toks[j] === '(' ? 1 : toks[j].startsWith(')') ? -1 : 0;
      if (depth) throw new TemplateError(`unclosed "(" at ${at}`);
      const close = toks[j - 1];
      cur.push({ kind: 'pipe', pipe: parsePipe(toks.slice(i + 1, j - 1), at), path: close.length > 1 ? close.slice(2).split('.') : [] });
      i = j - 1;
    } else if (t.startsWith(')')) throw new TemplateError(`unexpected ")" at ${at}`);
    else cur.push(parseArg(t, at));
  }
  if (!cur.length) throw new TemplateError(`missing value at ${at}`);
  cmds.push(cur);
  return { decl, cmds };
}

/** Parses a template into nodes. */
export function parseTemplate(format: string): Node[] {
  const root: Node[] = [];
  const stack: Array<{ node: Extract<Node, { body: Node[] }>; inAlt: boolean; out: Node[] }> = [];
  let out = root;
  let i = 0;
  let trimNext = false;
  while (i < format.length) {
    const open = format.indexOf('{{', i);
    let text = format.slice(i, open < 0 ? format.length : open);
    if (trimNext) text = text.replace(/^\s+/, '');
    trimNext = false;
    if (open < 0) {
      if (text) out.push({ kind: 'text', text });
      break;
    }
    const close = format.indexOf('}}', open + 2);
    if (close < 0) throw new TemplateError(`unclosed action at ${open}`);
    let body = format.slice(open + 2, close);
    if (body.startsWith('- ')) {
      text = text.replace(/\s+$/, '');
      body = body.slice(2);
    }
    if (body.endsWith(' -')) {
      trimNext = true;
      body = body.slice(0, -2);
    }
    if (text) out.push({ kind: 'text', text });
    i = close + 2;
    body = body.trim();
    if (body.startsWith('/*')) continue; // a comment
    const toks = tokenize(body, open);
    const kw = toks[0];
    if (kw === 'end') {
      const top = stack.pop();
      if (!top) throw new TemplateError(`{{end}} without a block at ${open}`);
      out = top.out;
    } else if (kw === 'else') {
      const top = stack[stack.length - 1];
      if (!top || top.inAlt) throw new TemplateError(`{{else}} outside a block at ${open}`);
      top.inAlt = true;
      if (toks[1] === 'if') {
        // {{else if X}}: an if block inside the else branch that shares this block's {{end}}
        const inner: Extract<Node, { body: Node[] }> = { kind: 'if', pipe: parsePipe(toks.slice(2), open), body: [], alt: [] };
        top.node.alt.push(inner);
        top.node = inner;
        top.inAlt = false;
        out = inner.body;
      } else out = top.node.alt;
    } else if (kw === 'if' || kw === 'with' || kw === 'range') {
      const node: Extract<Node, { body: Node[] }> = { kind: kw, pipe: parsePipe(toks.slice(1), open), body: [], alt: [] };
      out.push(node);
      stack.push({ node, inAlt: false, out });
      out = node.body;
    } else out.push({ kind: 'action', pipe: parsePipe(toks, open) });
  }
  if (stack.length) throw new TemplateError(`missing {{end}} for {{${stack[stack.length - 1].node.kind}}}`);
  return root;
}

// ---- values as Go prints them ------------------------------------------------------------------

/** fmt's %v of a JSON value: strings bare, lists `[a b]`, maps `map[k:v]` in key order, null `<nil>`. */
/** Marks an object as a Go struct (fields printed in order, `{a b}`) rather than a map (`map[k:v]`). */
const GO_STRUCT = Symbol.for('burrow.goStruct');

export function goStruct<T extends object>(o: T): T {
  Object.defineProperty(o, GO_STRUCT, { value: true, enumerable: false });
  return o;
}

export function goString(v: Value): string {
  if (v === null || v === undefined) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `[${v.map(goString).join(' ')}]`;
  const o = v as Record<string, Value>;
  if ((o as Record<symbol, unknown>)[GO_STRUCT]) return `{${Object.values(o).map(goString).join(' ')}}`;
  return `map[${Object.keys(o).sort().map((k) => `${k}:${goString(o[k])}`).join(' ')}]`;
}

function truthy(v: Value): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return (v as Record<symbol, unknown>)[GO_STRUCT] === true || Object.keys(v as object).length > 0;
  return true;
}

function sprintf(fmt: string, args: Value[]): string {
  let k = 0;
  return fmt.replace(/%([-+ 0#]*)(\d*)(?:\.(\d+))?([vsdqtxf%])/g, (_m, flags: string, width: string, prec: string, verb: string) => {
    if (verb === '%') return '%';
    const a = args[k++];
    let s: string;
    if (verb === 'q') s = JSON.stringify(goString(a));
    else if (verb === 'd') s = String(Math.trunc(Number(a)));
    else if (verb === 'x') s = Number(a).toString(16);
    else if (verb === 'f') s = Number(a).toFixed(prec ? Number(prec) : 6);
    else s = goString(a);
    if (prec && verb === 's') s = s.slice(0, Number(prec));
    const w = Number(width || 0);
    return flags.includes('-') ? s.padEnd(w) : s.padStart(w);
  });
}

const FUNCS: Record<string, (...a: Value[]) => Value> = {
  json: (v) => JSON.stringify(v ?? null),
  index: (v, ...keys) => keys.reduce((o: Value, k) => (o === null || o === undefined ? undefined : (o as Record<string, Value>)[String(k)]), v),
  len: (v) => (typeof v === 'string' || Array.isArray(v) ? v.length : v && typeof v === 'object' ? Object.keys(v).length : 0),
  join: (v, sep) => (Array.isArray(v) ? v.map(goString).join(String(sep ?? '')) : goString(v)),
  lower: (v) => goString(v).toLowerCase(),
  upper: (v) => goString(v).toUpperCase(),
  title: (v) => goString(v).replace(/\b\w/g, (c) => c.toUpperCase()),
  truncate: (v, n) => goString(v).slice(0, Number(n)),
  contains: (v, sub) => goString(v).includes(goString(sub)),
  printf: (fmt, ...a) => sprintf(String(fmt), a),
  print: (...a) => a.map(goString).join(' '),
  println: (...a) => `${a.map(goString).join(' ')}\n`,
  eq: (a, ...b) => b.some((x) => x === a),
  ne: (a, b) => a !== b,
  not: (a) => !truthy(a),
  and: (...a) => a.reduce((x, y) => (truthy(x) ? y : x)),
  or: (...a) => a.find(truthy) ?? a[a.length - 1],
};

// ---- execution ----------------------------------------------------------------------------------

type Scope = { dot: Value; root: Value; vars: Map<string, Value> };

function field(v: Value, path: string[]): Value {
  let cur = v;
  for (const p of path) {
    if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, Value>)[p];
  }
  return cur;
}

function evalArg(a: Arg, s: Scope): Value {
  if (a.kind === 'lit') return a.value;
  if (a.kind === 'pipe') return field(evalPipe(a.pipe, s), a.path);
  if (a.kind === 'field') {
    const base = a.base === '.' ? s.dot : a.base === '$' ? s.root : s.vars.get(a.base);
    if (a.base !== '.' && a.base !== '$' && !s.vars.has(a.base)) throw new TemplateError(`undefined variable "${a.base}"`);
    return field(base, a.path);
  }
  const f = FUNCS[a.name];
  if (!f) throw new TemplateError(`function "${a.name}" not defined`);
  return f();
}

function evalCmd(cmd: Cmd, s: Scope, piped: Value[]): Value {
  const head = cmd[0];
  if (head.kind === 'ident') {
    const f = FUNCS[head.name];
    if (!f) throw new TemplateError(`function "${head.name}" not defined`);
    return f(...cmd.slice(1).map((a) => evalArg(a, s)), ...piped);
  }
  if (cmd.length > 1 || piped.length) throw new TemplateError('only functions take arguments');
  return evalArg(head, s);
}

function evalPipe(p: Pipe, s: Scope): Value {
  let v: Value;
  p.cmds.forEach((c, i) => {
    v = evalCmd(c, s, i === 0 ? [] : [v]);
  });
  if (p.decl.length) s.vars.set(p.decl[p.decl.length - 1], v);
  return v;
}

function run(nodes: Node[], s: Scope, out: string[]): void {
  for (const n of nodes) {
    if (n.kind === 'text') out.push(n.text);
    else if (n.kind === 'action') {
      const v = evalPipe(n.pipe, s);
      if (!n.pipe.decl.length) out.push(v === undefined ? '<no value>' : goString(v));
    } else if (n.kind === 'if' || n.kind === 'with') {
      const v = evalPipe(n.pipe, s);
      if (truthy(v)) run(n.body, n.kind === 'with' ? { ...s, dot: v } : s, out);
      else run(n.alt, s, out);
    } else {
      const keyVar = n.pipe.decl.length === 2 ? n.pipe.decl[0] : null;
      const valVar = n.pipe.decl.length ? n.pipe.decl[n.pipe.decl.length - 1] : null;
      const v = evalPipe({ decl: [], cmds: n.pipe.cmds }, s);
      const items: Array<[Value, Value]> = Array.isArray(v) ? v.map((x, i) => [i, x]) : v && typeof v === 'object' ? Object.keys(v).sort().map((k) => [k, (v as Record<string, Value>)[k]]) : [];
      if (!items.length) {
        run(n.alt, s, out);
        continue;
      }
      for (const [k, x] of items) {
        const vars = new Map(s.vars);
        if (keyVar) vars.set(keyVar, k);
        if (valVar) vars.set(valVar, x);
        run(n.body, { ...s, dot: x, vars }, out);
      }
    }
  }
}

/** Renders `nodes` with `value` as dot (and $). */
export function execute(nodes: Node[], value: Value): string {
  const out: string[] = [];
  run(nodes, { dot: value, root: value, vars: new Map() }, out);
  return out.join('');
}

/** Renders a format string (after {@link normalizeFormat}) against one value. */
export function render(format: string, value: Value): string {
  return execute(parseTemplate(normalizeFormat(format)), value);
}

/**
 * Renders rows as podman's report package does: one line per row (a newline added when the
 * template has none), or with a leading `table`, a header of the fields' names (from `headers`,
 * else the field name in upper case) and columns aligned as Go's tabwriter (two spaces apart).
 */
export function renderRows(format: string, rows: Value[], headers: Record<string, string> = {}): string {
  let f = normalizeFormat(format);
  const table = /^table\b\s*/.test(f);
  // podman (containers/common report): in a table, fields separated by spaces are columns too
  if (table) f = f.replace(/^table\b\s*/, '').replace(/\}\}[ ]+\{\{/g, '}}\t{{');
  const nodes = parseTemplate(f);
  const lines = rows.map((r) => execute(nodes, r));
  if (!table) return lines.map((l) => (l.endsWith('\n') ? l : `${l}\n`)).join('');
  const head = f.replace(/\{\{\s*-?\s*\.?([A-Za-z_][\w.]*)[^}]*\}\}/g, (_m, name: string) => headers[name] ?? name.replace(/\./g, ' ').toUpperCase());
  const grid = [head, ...lines].map((l) => l.replace(/\n$/, '').split('\t'));
  const widths: number[] = [];
  for (const row of grid) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  // Go's tabwriter as podman sets it up: cells padded by 2, at least 12 wide
  return grid.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(Math.max(widths[i] + 2, 12)))).join('').trimEnd()).join('\n') + '\n';
}
