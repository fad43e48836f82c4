// Bundles the entry points that start often (the CLI, and later the CNI plugin executables)
// into CommonJS files under dist/: one file to parse, no ESM loader, ~3x faster starts on Node 20.
import { build as esbuild } from 'esbuild';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  define: { 'import.meta.url': '__burrowImportMetaUrl' },
  banner: { js: "const __burrowImportMetaUrl = require('url').pathToFileURL(__filename).href;" },
  sourcemap: 'linked',
  logLevel: 'warning',
  // import() of a builtin becomes require(): bin/load.cjs runs bundles as vm.Scripts, which
  // have no dynamic-import callback
  supported: { 'dynamic-import': false },
  write: false,
  minifyWhitespace: true,
  minifySyntax: true,
};

// Each `import fs from 'node:fs'` becomes its own __toESM(require('node:fs')), which copies every
// property of the module: ~100 copies of fs, path and net per CLI start. One per builtin will do.
// The builtins that Node's own start does not load (child_process, net, tty, zlib, ...: ~3 ms of
// compiling Node's internals) are loaded when first used: the module object is a Proxy that
// requires the builtin on its first property access, so `burrow --version` or a plugin's VERSION
// never loads child_process just because commander or a helper imports it.
const LAZY = ['child_process', 'crypto', 'stream', 'os', 'net', 'tty', 'zlib', 'dgram', 'readline', 'http', 'https', 'http2', 'worker_threads', 'stream/promises', 'dns', 'dns/promises'];
const MEMO = [
  'const __burrowBuiltins = new Map();',
  'function __burrowBuiltin(n, esm) {',
  '  const key = esm ? n : `${n} cjs`; let m = __burrowBuiltins.get(key); if (m) return m;',
  '  if (__burrowLazyNames.has(n)) { let real; const load = () => real ??= (esm ? __toESM(require(n), 1) : require(n));',
  '    m = new Proxy({}, { get: (_, k) => load()[k], has: (_, k) => k in load(), set: (_, k, v) => (load()[k] = v, true),',
  '      ownKeys: () => Reflect.ownKeys(load()), getOwnPropertyDescriptor: (_, k) => { const d = Object.getOwnPropertyDescriptor(load(), k); if (d) d.configurable = true; return d; } });',
  '  } else m = esm ? __toESM(require(n), 1) : require(n);',
  '  __burrowBuiltins.set(key, m); return m; }',
  `const __burrowLazyNames = new Set(${JSON.stringify(LAZY.map((n) => `node:${n}`))});`,
].join(' ');
const built = [];

async function build(options) {
  const r = await esbuild(options);
  for (const f of r.outputFiles) {
    let text = f.text;
    if (f.path.endsWith('.cjs')) {
      text = text.replace(/__toESM\(require\(("node:[a-z_/0-9]+")\), ?1\)/g, '__burrowBuiltin($1, true)');
      // a plain require of a lazy builtin (commander's child_process; `import * as`)
      text = text.replace(/\brequire\(("node:([a-z_/0-9]+)")\)/g, (all, id, n) => (LAZY.includes(n) ? `__burrowBuiltin(${id}, false)` : all));
      if (text.includes('__burrowBuiltin(')) text = text.replace(/\n/, ` ${MEMO}\n`); // on the banner's line: the source map's lines stay
      built.push(f.path);
    }
    fs.mkdirSync(path.dirname(f.path), { recursive: true });
    fs.writeFileSync(f.path, text);
  }
}

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

// V8's code cache beside each bundle (bin/load.cjs reads it): made by running the bundle once
// through the loader on a verb that touches only its startup path, so the cache holds the code
// every start compiles. A run that fails leaves no cache (the bundle still works, compiled from source).
// burrow trains on `ps` (the startup path, the command table, the container store) with a config
// whose every directory is in a temporary one, so the build reads and writes nothing of the host's.
const trainDir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-train-'));
const trainConfig = path.join(trainDir, 'burrow.toml');
fs.writeFileSync(trainConfig, [
  '[network]', `cni_config_dir = "${trainDir}/net.d"`, `cni_cache_dir = "${trainDir}/cache"`, `ipam_data_dir = "${trainDir}/ipam"`, 'firewall_backend = "none"',
  '[engine]', `state_dir = "${trainDir}/state"`, `volume_path = "${trainDir}/volumes"`, '',
].join('\n'));
const TRAIN = {
  burrow: { argv: ['--config', trainConfig, 'ps'] },
  bench: null,
  'aardvark-dns': { argv: ['--version'] },
  slirp4netns: { argv: ['--version'] },
  netavark: { argv: ['version'] },
};
// node -e CODE LOADER FILE ARGS: the bundle must see [node, FILE, ARGS] as it would from its launcher
const TRAINER = 'const [l, f] = process.argv.splice(1, 2, process.argv[2]); require(l)(f);';
const adds = trainAdds();
for (const file of built) {
  const name = path.basename(file, '.cjs');
  const version = { argv: [], env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}' };
  const train = name in TRAIN ? TRAIN[name] : adds?.[name] ?? version;
  fs.rmSync(`${file}.cache`, { force: true });
  if (!train) continue;
  // a plugin whose ADD fails here (no iptables yet, say) trains on VERSION instead
  for (const t of train === version || name in TRAIN ? [train] : [train, version]) {
    try {
      const cmd = [process.execPath, '-e', TRAINER, path.resolve('bin/load.cjs'), file, ...t.argv];
      execFileSync(t.netns ? 'nsenter' : cmd[0], t.netns ? [`--net=${t.netns}`, '--', ...cmd] : cmd.slice(1), {
        env: { ...process.env, ...t.env, BURROW_CODE_CACHE: `write:${file}.cache` },
        input: t.input ?? '',
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      break;
    } catch (e) {
      fs.rmSync(`${file}.cache`, { force: true });
      process.stderr.write(`bundle: no code cache for ${file}${t === version ? '' : ' from an ADD'}: ${String(e.stderr ?? e.message).trim().split('\n').pop()}\n`);
    }
  }
}
adds?.cleanup();
fs.rmSync(trainDir, { recursive: true, force: true });

/**
 * As root, the plugins of podman's default chain (bridge with host-local, portmap, firewall,
 * tuning) and loopback train on a real ADD in two throwaway network namespaces, so their caches
 * also hold the code of an ADD (about 8 ms of lazy compiling per exec, measured on bridge). Each
 * ADD is undone by a DEL; the namespaces go at the end. Without root (or when anything fails),
 * null: every plugin trains on VERSION.
 */
function trainAdds() {
  if (process.getuid?.() !== 0 || process.env.BURROW_TRAIN_ADD === '0') return null;
  const tag = `btrain${process.pid.toString(36)}`;
  const host = `/run/netns/${tag}h`;
  const ctr = `/run/netns/${tag}c`;
  try {
    execFileSync('ip', ['netns', 'add', `${tag}h`], { stdio: 'ignore' });
    execFileSync('ip', ['netns', 'add', `${tag}c`], { stdio: 'ignore' });
  } catch {
    return null;
  }
  const env = (command, ifname = 'eth0') => ({ CNI_COMMAND: command, CNI_CONTAINERID: tag, CNI_NETNS: ctr, CNI_IFNAME: ifname, CNI_PATH: path.resolve('plugins/bin') });
  const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'trainbr0' }, { name: 'vethtrain' }, { name: 'eth0', sandbox: ctr }], ips: [{ address: '10.254.254.2/24', gateway: '10.254.254.1', interface: 2 }], dns: {} };
  const confs = {
    bridge: { cniVersion: '1.0.0', name: 'train', type: 'bridge', bridge: 'trainbr0', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', dataDir: path.join(trainDir, 'ipam'), routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.254.254.0/24' }]] } },
    portmap: { cniVersion: '1.0.0', name: 'train', type: 'portmap', capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] }, prevResult: prev },
    firewall: { cniVersion: '1.0.0', name: 'train', type: 'firewall', backend: '', prevResult: prev },
    tuning: { cniVersion: '1.0.0', name: 'train', type: 'tuning', mtu: 1400, dataDir: path.join(trainDir, 'tuning'), sysctl: { 'net.ipv4.conf.IFNAME.arp_filter': '1' }, prevResult: prev },
    loopback: { cniVersion: '1.0.0', name: 'train', type: 'loopback' },
  };
  const out = {};
  for (const [name, conf] of Object.entries(confs)) {
    out[name] = { argv: [], env: env('ADD', name === 'loopback' ? 'lo' : 'eth0'), input: JSON.stringify(conf), netns: host, undo: env('DEL', name === 'loopback' ? 'lo' : 'eth0') };
  }
  out.cleanup = () => {
    for (const name of Object.keys(confs).reverse()) {
      try {
        execFileSync('nsenter', [`--net=${host}`, '--', process.execPath, path.resolve('bin/load.cjs'), path.resolve(`dist/plugins/${name}.cjs`), name], { env: { ...process.env, ...out[name].undo }, input: out[name].input, stdio: ['pipe', 'ignore', 'ignore'] });
      } catch {
        // the namespaces go anyway
      }
    }
    for (const ns of [`${tag}h`, `${tag}c`]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  };
  return out;
}
