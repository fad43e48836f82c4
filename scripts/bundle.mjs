// Bundles the entry points that start often (the CLI, and later the CNI plugin executables)
// into CommonJS files under dist/: one file to parse, no ESM loader, ~3x faster starts on Node 20.
import { build } from 'esbuild';
import fs from 'node:fs';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // netlink loads its own native binding relative to its package: keep it in node_modules.
  external: ['netlink'],
  define: { 'import.meta.url': '__burrowImportMetaUrl' },
  banner: { js: "const __burrowImportMetaUrl = require('url').pathToFileURL(__filename).href;" },
  sourcemap: 'linked',
  logLevel: 'warning',
};

fs.mkdirSync('dist', { recursive: true });
fs.writeFileSync('dist/package.json', '{ "type": "commonjs" }\n');
const entries = { burrow: 'runtime/main.ts' };
if (fs.existsSync('plugins/main.ts')) entries.plugins = 'plugins/main.ts';
await build({ ...common, entryPoints: entries, outdir: 'dist', outExtension: { '.js': '.cjs' } });
