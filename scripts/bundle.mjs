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
await build({ ...common, entryPoints: { burrow: 'runtime/main.ts', bench: 'bench/cli.ts' }, outdir: 'dist', outExtension: { '.js': '.cjs' } });
// One bundle per CNI plugin, so each executable parses only its own code.
const plugins = fs.readdirSync('plugins', { withFileTypes: true })
  .filter((d) => d.isDirectory() && fs.existsSync(`plugins/${d.name}/main.ts`))
  .map((d) => d.name);
await build({
  ...common,
  entryPoints: Object.fromEntries(plugins.map((p) => [p, `plugins/${p}/main.ts`])),
  outdir: 'dist/plugins',
  outExtension: { '.js': '.cjs' },
  // plugins/<name>/main.ts sits two levels below the root, like dist/plugins/<name>.cjs
});
// The drop-ins for podman's helpers (bin/compat/), named as the tools are.
await build({
  ...common,
  entryPoints: { 'aardvark-dns': 'runtime/compat/aardvark_main.ts', slirp4netns: 'runtime/compat/slirp4netns_main.ts', netavark: 'runtime/compat/netavark_main.ts' },
  outdir: 'dist/compat',
  outExtension: { '.js': '.cjs' },
});
