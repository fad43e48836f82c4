/** `burrow unshare`: run a command in a new user namespace with podman's --userns modes. */
import { Command } from 'commander';
import os from 'node:os';
import { usernetOptions } from './cmd_usernet.js';
import { usernetSetup, type UsernetFlags } from '../network/usernet.js';
import type { BurrowConfig } from '../config.js';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function unshareCommand(globals: () => { config?: string }, setExit: (code: number) => void): Command {
  return usernetOptions(new Command('unshare'))
    .description('run CMD in a new user namespace (like podman unshare): --userns host|keep-id[:uid=U,gid=G,size=S]|nomap|auto[:size=N]')
    .option('--userns <mode>', 'user namespace mode', 'host')
    .option('--uidmap <C:H[:S]>', 'explicit uid mapping (repeatable; H is an intermediate id when rootless)', collect)
    .option('--gidmap <C:H[:S]>', 'explicit gid mapping (repeatable)', collect)
    .option('--rootfs <dir>', 'for --userns auto: size the namespace from the highest uid/gid used in DIR')
    .option('--ns <list>', 'further namespaces: net,mnt,pid,uts,ipc', 'mnt')
    .option('--network <mode>', 'usernet: a new network namespace served by burrow\'s userspace stack (implies net); none: leave --ns as given')
    .option('--rootless-netns', 'run CMD in the user\'s network namespace, where the user\'s networks live (podman unshare --rootless-netns); made if needed')
    .argument('<cmd...>', 'command and arguments (after --)')
    .action(async (cmd: string[], o: UsernetFlags & { userns: string; uidmap?: string[]; gidmap?: string[]; rootfs?: string; ns: string; network?: string; rootlessNetns?: boolean }) => {
      const { parseUsernsMode, parseIdMapSpec } = await import('../../userns/mapping.js');
      const { relaySignals, startInNamespaces } = await import('../../userns/unshare.js');
      const { loadConfig } = await import('../config.js');
      if (o.rootlessNetns) {
        const given = [o.network && '--network', o.userns !== 'host' && '--userns', o.uidmap?.length && '--uidmap', o.gidmap?.length && '--gidmap', o.rootfs && '--rootfs', o.ns !== 'mnt' && '--ns', o.publish?.length && '-p'].filter(Boolean);
        if (given.length) throw new Error(`--rootless-netns enters the user's network namespace as it is: ${given.join(', ')} cannot be given with it`);
        setExit(await inUserNetns(cmd, loadConfig(globals().config)));
        return;
      }
      if (o.network && o.network !== 'usernet' && o.network !== 'none') throw new Error(`unknown --network "${o.network}" (usernet or none)`);
      const usernet = o.network === 'usernet';
      if (!usernet && (o.publish?.length || o.apiSocket || o.mapHostLoopback)) throw new Error('-p, --api-socket and --map-host-loopback need --network usernet');
      const setup = usernet ? await usernetSetup(o, true) : null;
      const namespaces = o.ns.split(',').filter(Boolean);
      if (usernet && !namespaces.includes('net')) namespaces.push('net');
      const started = await startInNamespaces(cmd, {
        mode: parseUsernsMode(o.userns),
        uidmaps: o.uidmap?.map((s) => parseIdMapSpec(s, '--uidmap')),
        gidmaps: o.gidmap?.map((s) => parseIdMapSpec(s, '--gidmap')),
        namespaces,
        rootfs: o.rootfs,
        stateDir: loadConfig(globals().config).stateDir,
        tap: setup?.tapName,
        holdUntilGo: !!setup,
      });
      let stop = () => undefined as void;
      if (setup) {
        const fs = await import('node:fs');
        const { startUsernet } = await import('../network/usernet.js');
        fs.closeSync(started.fds!.netns);
        fs.closeSync(started.fds!.userns);
        try {
          stop = (await startUsernet(started.pid, started.fds!.tap!, setup)).stop;
        } catch (err) {
          started.abort();
          await started.exited;
          throw err;
        }
        started.go();
      }
      // Signals for burrow are the container's: the helper passes them on to the command.
      const unrelay = relaySignals(started.child);
      const code = await started.exited;
      unrelay();
      stop();
      setExit(code);
    });
}

/**
 * `unshare --rootless-netns`: CMD in the user's network namespace (and its user namespace, as its
 * root), with this terminal. A namespace made for this command alone is removed after it.
 */
async function inUserNetns(cmd: string[], config: BurrowConfig): Promise<number> {
  const stateDir = config.stateDir;
  if (process.getuid?.() === 0) throw new Error('--rootless-netns is for rootless users: root\'s networks live in the host\'s own network namespace');
  const { collectUserNetns } = await import('../network/user_netns.js');
  const { userNetns } = await import('../attach/index.js');
  const { helperPath, relaySignals } = await import('../../userns/unshare.js');
  const { spawn } = await import('node:child_process');
  const { holder, created } = await userNetns(config);
  const child = spawn(helperPath(), ['-j', String(holder.pid), '--', ...cmd], { stdio: 'inherit' });
  const unrelay = relaySignals(child);
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(125));
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 + ((os.constants.signals as Record<string, number>)[sig] ?? 0) : 125)));
  });
  unrelay();
  // what this command made goes with it, unless a container on a user network came meanwhile
  if (created) {
    const { userNetnsNeeded } = await import('../attach/index.js');
    await collectUserNetns(stateDir, () => userNetnsNeeded(stateDir));
  }
  return code;
}

