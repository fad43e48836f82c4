/**
 * burrow's own CNI plugins, for the runtime's in-process fast path.
 *
 * A binary on CNI_PATH is "ours" when its launcher carries the marker line
 * below (plugins/bin/* and the copies `burrow cni install` writes). Then the
 * runtime calls the registered implementation through skel's dispatch instead
 * of starting a process; the request and the output are byte-for-byte what
 * the executable would see and print.
 */
import fs from 'node:fs';
import type { InProcessResolver } from '../net/cni/invoke.js';
import type { CniPlugin } from '../net/cni/skel.js';

/** The line every burrow plugin launcher contains. */
export const LAUNCHER_MARKER = 'burrow-cni-plugin';

const registry = new Map<string, CniPlugin>();

/** Registers an implementation under its binary name. */
export function registerPlugin(plugin: CniPlugin): void {
  registry.set(plugin.name, plugin);
}

/** The implementation registered for `type`, if any. */
export function ownPlugin(type: string): CniPlugin | undefined {
  return registry.get(type);
}

/** Names of the registered plugins. */
export function ownPluginNames(): string[] {
  return [...registry.keys()].sort();
}

/**
 * True when `file` is a burrow plugin launcher: a script whose first 512 bytes carry the marker,
 * or a native launcher (native/burrow-cni.c) whose trailer, in its last 8 KiB, does.
 */
export function isLauncher(file: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const buf = Buffer.alloc(512);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (buf.subarray(0, n).includes(LAUNCHER_MARKER)) return true;
    if (n < 4 || buf.readUInt32BE(0) !== 0x7f454c46) return false; // "\x7fELF"
    const size = fs.fstatSync(fd).size;
    const tail = Buffer.alloc(Math.min(size, 8192));
    fs.readSync(fd, tail, 0, tail.length, size - tail.length);
    return tail.subarray(tail.length - 22).toString('latin1').startsWith('BCNI-TRAILER ') && tail.includes(LAUNCHER_MARKER);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Resolver for CniRuntime: in-process when the binary found on CNI_PATH is our launcher. */
export function inProcessResolver(): InProcessResolver {
  return (type, binary) => {
    const plugin = registry.get(type);
    return plugin && isLauncher(binary) ? plugin : undefined;
  };
}
