/** Runs the built burrow CLI (dist/burrow.cjs) with a private config, optionally inside a netns. */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'dist', 'burrow.cjs');
export const REFERENCE_CNI = '/usr/lib/cni';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface BurrowSandbox {
  dir: string;
  configFile: string;
  confDir: string;
  cacheDir: string;
  run(args: string[], opts?: { netns?: string; env?: NodeJS.ProcessEnv }): RunResult;
  /** Like run, but fails the test with stderr unless it exits 0. */
  ok(args: string[], opts?: { netns?: string }): string;
}

/** A temp dir with burrow.toml pointing the CNI config and cache dirs into it. */
export function sandbox(t: ExecutionContext, cniPath: string[] = [REFERENCE_CNI]): BurrowSandbox {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-it-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const confDir = path.join(dir, 'net.d');
  const cacheDir = path.join(dir, 'cache');
  const configFile = path.join(dir, 'burrow.toml');
  fs.writeFileSync(configFile, `[network]\ncni_config_dir = "${confDir}"\ncni_cache_dir = "${cacheDir}"\ncni_path = ${JSON.stringify(cniPath)}\n`);
  const run = (args: string[], opts: { netns?: string; env?: NodeJS.ProcessEnv } = {}): RunResult => {
    const argv = [process.execPath, '--', CLI, '--config', configFile, ...args];
    const cmd = opts.netns ? ['nsenter', `--net=${opts.netns}`, '--', ...argv] : argv;
    const env = { ...process.env, ...opts.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', env, timeout: 120_000 });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  return {
    dir, configFile, confDir, cacheDir, run,
    ok(args, opts) {
      const r = run(args, opts);
      if (r.code !== 0) throw new Error(`burrow ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    },
  };
}

/** Every file below `dir`, relative, sorted (empty when it does not exist). */
export function listTree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}
