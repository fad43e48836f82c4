/**
 * The body of every burrow CNI executable: read stdin, run skel's dispatch on
 * the plugin, print, exit with its status. Used by plugins/<name>/main.ts,
 * which the bundler turns into dist/plugins/<name>.cjs.
 */
import fs from 'node:fs';
import { dispatch, type CniPlugin } from '../net/cni/skel.js';
import { registerPlugin } from './registry.js';

export const BURROW_VERSION = '0.1.0';

/** Registers `delegates` for in-process delegation, then serves one CNI call on `plugin`. */
export async function runPlugin(plugin: CniPlugin, delegates: CniPlugin[] = []): Promise<void> {
  registerPlugin(plugin);
  for (const d of delegates) registerPlugin(d);
  // Without CNI_COMMAND skel prints its banner and does not read stdin.
  const stdin = process.env.CNI_COMMAND ? fs.readFileSync(0) : Buffer.alloc(0);
  const out = await dispatch(plugin, process.env, stdin, `CNI ${plugin.name} plugin (burrow ${BURROW_VERSION})`);
  if (out.stdout) fs.writeSync(1, out.stdout);
  if (out.stderr) fs.writeSync(2, out.stderr);
  // Exit now: open handles (netlink sockets, timers) must not keep a finished plugin alive.
  process.exit(out.exitCode);
}
