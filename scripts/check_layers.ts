/**
 * Import-layering check: dependencies point downward only.
 *
 *   native  <  net  <  userns  <  plugins  <  runtime  <  bench, test
 *
 * net/wire imports nothing of ours but net/wire; net/stack only net/wire and itself. Within
 * runtime/, only main.ts and runtime/cli import runtime/cli. One plugin
 * folder may not reach into another's internals (plugins/*.ts at the top are shared). Production
 * code never imports test/ or bench/. (plugins/<x>/index.ts is a plugin's public entry.) Prints each violation as file:line and exits 1 if any.
 */
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const RANK: Record<string, number> = { native: 0, net: 1, userns: 2, plugins: 3, runtime: 4, bench: 5, test: 6, scripts: 6 };

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : walk(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function layerOf(rel: string): string {
  return rel.split(path.sep)[0];
}

function allowed(from: string, to: string): string | null {
  const a = layerOf(from);
  const b = layerOf(to);
  const isTest = /_test\.ts$/.test(from);
  if (!(b in RANK)) return `imports outside the project layers (${to})`;
  if ((b === 'test' || b === 'bench') && !isTest && a !== b && a !== 'scripts' && a !== 'test') return `production code imports ${b}/`;
  if (isTest) return null;
  if (RANK[b] > RANK[a]) return `${a}/ may not import ${b}/ (dependencies point downward)`;
  const [fa, fb] = [from.split(path.sep), to.split(path.sep)];
  if (fa[0] === 'net' && fa[1] === 'wire' && !(fb[0] === 'net' && fb[1] === 'wire')) return 'net/wire imports only net/wire';
  if (fa[0] === 'net' && fa[1] === 'stack' && !(fb[0] === 'net' && (fb[1] === 'wire' || fb[1] === 'stack'))) return 'net/stack imports only net/wire and net/stack';
  // runtime/cli is the top of the runtime: the commands use the rest, nothing else uses them.
  if (fa[0] === 'runtime' && fb[0] === 'runtime' && fb[1] === 'cli' && fa[1] !== 'cli' && fa[1] !== 'main.ts') return 'only runtime/main.ts and runtime/cli may import runtime/cli (the CLI is the top of the runtime)';
  // Another plugin's index (its public entry) is fine; its other files are internals.
  if (fa[0] === 'plugins' && fb[0] === 'plugins' && fb.length > 2 && fa[1] !== fb[1] && !/^index\.[jt]s$/.test(fb[2])) return `plugins/${fa[1]} reaches into plugins/${fb[1]}/${fb[2]}`;
  return null;
}

const files = Object.keys(RANK).flatMap((d) => walk(path.join(ROOT, d)));
const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/gm;
let bad = 0;
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  const rel = path.relative(ROOT, file);
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    const target = path.relative(ROOT, path.resolve(path.dirname(file), spec));
    const why = allowed(rel, target);
    if (why) {
      const line = text.slice(0, m.index).split('\n').length;
      console.error(`${rel}:${line}: ${why}`);
      bad++;
    }
  }
}
console.log(bad ? `layers: ${bad} violation(s) in ${files.length} files` : `layers: ok (${files.length} files)`);
process.exit(bad ? 1 : 0);
