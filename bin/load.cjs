'use strict';
// Loads one of burrow's bundles (dist/**/*.cjs) with V8's code cache: `FILE.cache`, made by
// `npm run build` (scripts/bundle.mjs), holds the bundle's compiled code, so a start skips the
// parse and compile of ~100 KB to 1 MB of JavaScript (the largest single cost of a cold start).
// The cache names the bundle it was made from (size and mtime); any mismatch, a missing file or a
// cache V8 rejects (another Node) falls back to compiling the source, with the same result.
//
// BURROW_CODE_CACHE=off compiles from source; BURROW_CODE_CACHE=write:FILE (used by the build)
// writes the cache of what this run compiled to FILE when the process exits.
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');
const { isAscii } = require('node:buffer');

const MAGIC = 'burrow-code-cache-1';

/** The header that ties a cache to one bundle file and one Node. */
function stamp(st) {
  return `${MAGIC} ${process.version} ${process.arch} ${st.size} ${st.mtimeMs}\n`;
}

function readCache(file, st) {
  let buf;
  try {
    buf = fs.readFileSync(`${file}.cache`);
  } catch {
    return { cache: 'none' };
  }
  const head = stamp(st);
  if (buf.length <= head.length || buf.toString('latin1', 0, head.length) !== head) return { cache: 'stale' };
  return { cache: 'used', data: buf.subarray(head.length) };
}

function load(file) {
  file = path.resolve(file);
  const mode = process.env.BURROW_CODE_CACHE ?? '';
  const fd = fs.openSync(file, 'r');
  const st = fs.fstatSync(fd);
  // esbuild writes ASCII (charset=ascii): a one-byte string is made without decoding UTF-8
  const raw = fs.readFileSync(fd);
  const src = isAscii(raw) ? raw.latin1Slice(0, raw.length) : raw.toString('utf8');
  fs.closeSync(fd);
  const found = mode === '' ? readCache(file, st) : { cache: 'off' };
  const script = new vm.Script(Module.wrap(src), { filename: file, cachedData: found.data });
  // what happened, for tests and `BURROW_DEBUG`: used, rejected (by V8), stale, none or off
  load.last = { file, cache: script.cachedDataRejected ? 'rejected' : found.cache };
  if (mode.startsWith('write:')) {
    const out = mode.slice('write:'.length);
    process.once('exit', () => {
      fs.writeFileSync(out, Buffer.concat([Buffer.from(stamp(st), 'latin1'), script.createCachedData()]));
    });
  }
  const m = new Module(file, require.main ?? null);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  const req = Module.createRequire(file);
  script.runInThisContext({ displayErrors: true }).call(m.exports, m.exports, req, m, file, path.dirname(file));
  m.loaded = true;
  return m.exports;
}

module.exports = load;

// `node bin/load.cjs BUNDLE SELF ARGS...`: how a native launcher (native/burrow-cni.c) runs a plugin
// cold; the bundle sees process.argv [node, SELF, ARGS...], as under a script launcher
if (require.main === module) {
  const [bundle, self] = process.argv.splice(2, 2);
  process.argv[1] = self;
  load(bundle);
}
