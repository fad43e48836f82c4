/** `burrow unshare`: run a command in a new user namespace with podman's --userns modes. */
import { Command } from 'commander';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function unshareCommand(globals: () => { config?: string }, setExit: (code: number) => void): Command {
  return new Command('unshare')
    .description('run CMD in a new user namespace (like podman unshare): --userns host|keep-id[:uid=U,gid=G,size=S]|nomap|auto[:size=N]')
    .option('--userns <mode>', 'user namespace mode', 'host')
    .option('--uidmap <C:H[:S]>', 'explicit uid mapping (repeatable; H is an intermediate id when rootless)', collect)
    .option('--gidmap <C:H[:S]>', 'explicit gid mapping (repeatable)', collect)
    .option('--rootfs <dir>', 'for --userns auto: size the namespace from the highest uid/gid used in DIR')
    .option('--ns <list>', 'further namespaces: net,mnt,pid,uts,ipc', 'mnt')
    .argument('<cmd...>', 'command and arguments (after --)')
    .action(async (cmd: string[], o: { userns: string; uidmap?: string[]; gidmap?: string[]; rootfs?: string; ns: string }) => {
      const { parseUsernsMode, parseIdMapSpec } = await import('../userns/mapping.js');
      const { unshare } = await import('../userns/unshare.js');
      const { loadConfig } = await import('./config.js');
      setExit(await unshare(cmd, {
        mode: parseUsernsMode(o.userns),
        uidmaps: o.uidmap?.map((s) => parseIdMapSpec(s, '--uidmap')),
        gidmaps: o.gidmap?.map((s) => parseIdMapSpec(s, '--gidmap')),
        namespaces: o.ns.split(',').filter(Boolean),
        rootfs: o.rootfs,
        stateDir: loadConfig(globals().config).stateDir,
      }));
    });
}
