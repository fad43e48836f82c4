/** `burrow run` (foreground) and `burrow system gc`. */
import { Command, Option } from 'commander';
import { ContainerError } from './containers.js';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function runCommand(globals: () => { config?: string }, setExit: (code: number) => void, out: (s: string) => void): Command {
  return new Command('run')
    .description('run CMD in a new container (-d: in the background): rootful on the default bridge network, rootless on usernet')
    .option('--rm', 'remove the container when it exits (otherwise it stays, exited, until burrow rm)')
    .option('-d, --detach', 'run in the background under a small supervisor; print the container id')
    .option('--name <name>', 'container name')
    .option('--network <net>', 'a CNI network (rootful; NAME:ip=IP,mac=MAC,interface_name=IF for per-network options; repeat the flag or list a,b for several), usernet, pasta, slirp4netns, host, none, or container:NAME', collect, [])
    .option('-p, --publish <spec>', 'publish a port: [hostIP:]hostPort[-end]:ctrPort[-end][/tcp|udp] (repeatable)', collect, [])
    .option('--ip <ip>', 'static IP on a CNI network')
    .option('--mac-address <mac>', 'static MAC on a CNI network')
    .option('--dns <ip>', 'nameserver for /etc/resolv.conf (repeatable)', collect, [])
    .option('--hostname <name>', 'hostname inside (default: the short container id)')
    .option('--userns <mode>', 'host | keep-id[:uid=U,gid=G] | nomap | auto[:size=N]')
    .option('--uidmap <C:H[:S]>', 'explicit uid mapping (repeatable)', collect, [])
    .option('--gidmap <C:H[:S]>', 'explicit gid mapping (repeatable)', collect, [])
    .option('--rootfs <dir>', 'root filesystem (default: the host\'s, read-only, with private /tmp /run /dev/shm /proc)')
    .option('--image <file.tar>', 'unpack an image tarball (docker save, OCI layout, or a plain rootfs tar, maybe gzipped) as the root')
    .option('--cap-add <cap>', 'add a capability (NET_ADMIN, CAP_NET_RAW, ALL; repeatable)', collect, [])
    .option('--cap-drop <cap>', 'drop a capability (repeatable; ALL drops every one)', collect, [])
    .option('--pod <name>', 'run in this pod (share its network, uts and ipc namespaces); new:NAME creates the pod first, with this run\'s --network, -p, --dns, --hostname, --userns and --map-host-loopback')
    .addOption(new Option('--infra', 'internal: the pod\'s infra container').hideHelp())
    .option('-v, --volume <host:ctr[:ro|rw]>', 'bind-mount a host path into the container (repeatable)', collect, [])
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside')
    .option('--map-host-loopback <addr>', 'usernet: an address that reaches the host\'s loopback (host.containers.internal)')
    .argument('[cmd...]', 'command and arguments (after --; with --image, the image\'s command by default)')
    .action(async (cmd: string[], o: { rm?: boolean; detach?: boolean; name?: string; network: string[]; publish: string[]; ip?: string; macAddress?: string; dns: string[]; hostname?: string; userns?: string; uidmap: string[]; gidmap: string[]; rootfs?: string; image?: string; capAdd: string[]; capDrop: string[]; pod?: string; infra?: boolean; volume: string[]; env: string[]; workdir?: string; mapHostLoopback?: string }) => {
      const { runContainer, detachRun } = await import('./run.js');
      const supervising = process.env.BURROW_SUPERVISE;
      // --pod new:NAME, as podman: the pod is created first and takes the network-side options
      // (a detached run's supervisor sees the same argv: the pod exists by then)
      let newPod: string | undefined;
      if (o.pod?.startsWith('new:')) {
        const podName = o.pod.slice('new:'.length);
        if (!podName) throw new ContainerError('--pod new: needs a pod name (--pod new:NAME)');
        if (o.network.length > 1) throw new ContainerError('--pod new: the pod takes one --network value (a,b lists several networks)');
        if (!supervising) {
          const { createPod } = await import('./cmd_pods.js');
          await createPod({ name: podName, network: o.network[0], publish: o.publish, dns: o.dns, hostname: o.hostname, userns: o.userns, mapHostLoopback: o.mapHostLoopback }, globals().config);
          newPod = podName;
        }
        o = { ...o, pod: podName, network: [], publish: [], dns: [], hostname: undefined, userns: undefined, mapHostLoopback: undefined };
      }
      try {
        if (o.detach && !supervising) {
          out(`${await detachRun(process.argv.slice(2), globals().config)}\n`);
          return;
        }
        setExit(await runContainer({ ...o, mac: o.macAddress, cmd, fixedId: supervising, readyFd: supervising ? 3 : undefined, detached: !!supervising }, globals().config));
      } catch (err) {
        // the container never started: the pod made for it goes too
        if (newPod) await (await import('./cmd_pods.js')).removePod(newPod, { force: true, time: 0 }, globals().config).catch(() => undefined);
        throw err;
      }
    });
}

/** Hidden commands that burrow runs itself (inside a container's user namespace). */
export function internalCommand(out: (s: string) => void): Command {
  const cmd = new Command('internal').description('used by burrow itself');
  cmd.addCommand(new Command('unpack-image').argument('<file>').argument('<root>').option('--id-map <json>', 'container id -> file owner id ({uid, gid} IdMapping lists)').action(async (file: string, root: string, o: { idMap?: string }) => {
    const { planImage, unpackImage } = await import('./image.js');
    const stats = await unpackImage(file, await planImage(file), root, { chown: true, spoolDir: `${root}.layers`, idMap: o.idMap ? JSON.parse(o.idMap) : undefined });
    out(`${JSON.stringify(stats)}\n`);
  }));
  return cmd;
}

export function systemCommand(globals: () => { config?: string }, out: (s: string) => void): Command {
  const cmd = new Command('system').description('maintenance');
  cmd.addCommand(new Command('gc').description('clean up after containers whose burrow process was killed (network attachments, state)').action(async () => {
    const { makeContext } = await import('./context.js');
    const { gcContainers } = await import('./run.js');
    const ctx = await makeContext(globals().config, { plugins: true });
    for (const line of await gcContainers(ctx)) out(`${line}\n`);
  }));
  return cmd;
}
