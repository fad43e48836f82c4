/** `burrow run` (foreground) and `burrow system gc`. */
import { Command, Option } from 'commander';
import { DEFAULT_DETACH_KEYS, parseDetachKeys } from '../container/attach_proto.js';
import { ContainerError } from '../container/containers.js';

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
    .option('--network-alias <name>', 'another name of the container on its CNI networks with DNS (repeatable)', collect, [])
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
    .option('-v, --volume <[src:]ctr[:opts]>', 'mount a host path (/abs or ./relative), a named volume, or (ctr alone) a new anonymous volume; opts: ro, rw, z, Z, U, [no]exec, [no]suid, [no]dev, bind, rbind (repeatable)', collect, [])
    .option('--mount <spec>', 'type=bind|volume|tmpfs,source=..,target=..[,readonly][,tmpfs-size=..][,tmpfs-mode=..] (repeatable)', collect, [])
    .option('--tmpfs <ctr[:opts]>', 'a tmpfs at this path (default rw,noexec,nosuid,nodev, mode 1777; size=, mode=) (repeatable)', collect, [])
    .option('-e, --env <K=V>', 'environment variable (K alone passes yours; repeatable)', collect, [])
    .option('--env-file <file>', 'read K=V lines from a file (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside')
    .option('-i, --interactive', 'keep stdin open (attached to this terminal when not detached)')
    .option('-t, --tty', 'give the container a terminal (its own, from the container\'s devpts)')
    .option('--detach-keys <keys>', 'the key sequence that detaches from the container (default ctrl-p,ctrl-q; "" disables)')
    .option('-u, --user <user[:group]>', 'run the command as this user (a name or id of the container\'s /etc/passwd)')
    .option('--entrypoint <cmd>', 'replace the image\'s entrypoint (a program, or a JSON array); drops the image\'s command')
    .option('--read-only', 'mount the container\'s root read-only (/tmp, /run, /var/tmp, /dev/shm stay writable)')
    .option('--privileged', 'every capability, the host\'s devices, no masked /proc and /sys paths')
    .option('--security-opt <opt>', 'no-new-privileges, unmask=ALL, label=..., seccomp=unconfined, apparmor=unconfined (repeatable)', collect, [])
    .option('--add-host <host:ip>', 'an /etc/hosts entry (repeatable)', collect, [])
    .option('-l, --label <k=v>', 'a label on the container (repeatable)', collect, [])
    .option('--init', 'run an init as pid 1 (burrow always does: this is accepted for podman\'s scripts)')
    .option('--map-host-loopback <addr>', 'usernet: an address that reaches the host\'s loopback (host.containers.internal)')
    .argument('[cmd...]', 'command and arguments (after --; with --image, the image\'s command by default)')
    .action(async (cmd: string[], o: RunFlags) => {
      const { runContainer, detachRun, startSupervisor, NeedsSupervisor } = await import('../container/run.js');
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
      const detachKeys = parseDetachKeys(o.detachKeys ?? DEFAULT_DETACH_KEYS);
      if (!supervising && o.publish.length && o.network.some((n) => n === 'host' || n === 'none')) {
        process.stderr.write('Port mappings have been discarded as one of the Host, Container, Pod, and None network modes are in use\n');
      }
      try {
        if (o.detach && !supervising) {
          // BURROW_RUN_IN_CLI=1, as root: this process sets the container up and hands it to a
          // native holder (no second Node start); a mode that needs a live Node process gets a
          // supervisor instead. Opt-in for now: under 50 parallel runs a container was sometimes
          // lost this way (rootless often, rootful rarely: see issue 20's note)
          if (process.getuid?.() === 0 && process.env.BURROW_RUN_IN_CLI === '1') try {
            await runContainer({ ...o, mac: o.macAddress, cmd, detached: true, inCli: { announce: (id) => out(`${id}\n`) } }, globals().config);
            return; // the command ended before the hand-over: its id was said, and it ran
          } catch (err) {
            if (!(err instanceof NeedsSupervisor)) throw err;
          }
          out(`${await detachRun(process.argv.slice(2), globals().config)}\n`);
          return;
        }
        if ((o.tty || o.interactive) && !supervising) {
          // as podman with conmon: the container runs under a supervisor, and this process is
          // its first attached client (so the detach keys leave it running)
          const s = await startSupervisor(process.argv.slice(2), globals().config, { waitAttach: true });
          setExit(await attachTo(s, { stdin: !!o.interactive, detachKeys, config: globals().config }));
          return;
        }
        setExit(await runContainer({ ...o, mac: o.macAddress, cmd, fixedId: supervising, readyFd: supervising ? 3 : undefined, detached: !!supervising, waitAttach: !!process.env.BURROW_WAIT_ATTACH }, globals().config));
      } catch (err) {
        // the container never started: the pod made for it goes too
        if (newPod) await (await import('./cmd_pods.js')).removePod(newPod, { force: true, time: 0 }, globals().config).catch(() => undefined);
        throw err;
      }
    });
}

interface RunFlags {
  rm?: boolean; detach?: boolean; name?: string; network: string[]; publish: string[]; ip?: string; macAddress?: string; dns: string[]; networkAlias: string[]; hostname?: string;
  userns?: string; uidmap: string[]; gidmap: string[]; rootfs?: string; image?: string; capAdd: string[]; capDrop: string[]; pod?: string; infra?: boolean;
  volume: string[]; mount: string[]; tmpfs: string[]; env: string[]; envFile: string[]; workdir?: string; mapHostLoopback?: string;
  interactive?: boolean; tty?: boolean; detachKeys?: string; user?: string; entrypoint?: string; readOnly?: boolean; privileged?: boolean;
  securityOpt: string[]; addHost: string[]; label: string[]; init?: boolean;
}

/**
 * Attaches this terminal to a supervisor just started with waitAttach, and resolves to the exit
 * code: the container's; 0 after the detach keys (it goes on running); the recorded one if the
 * supervisor went away without saying.
 */
export async function attachTo(s: { id: string; socket: string; release(): void }, o: { stdin: boolean; detachKeys: Buffer; config?: string }): Promise<number> {
  const { attachSocket } = await import('../container/attach_client.js');
  let r;
  try {
    r = await attachSocket(s.socket, { stdin: o.stdin, detachKeys: o.detachKeys });
  } finally {
    s.release();
  }
  if (r.detached) return 0;
  if (r.code !== null) return r.code;
  const { loadConfig } = await import('../config.js');
  const { ContainerStore } = await import('../container/containers.js');
  const rec = new ContainerStore(loadConfig(o.config).stateDir).list().find((x) => x.id === s.id);
  return rec?.exitCode ?? 125;
}

/** Hidden commands that burrow runs itself (inside a container's user namespace). */
export function internalCommand(out: (s: string) => void, globalConfig: () => string | undefined): Command {
  const cmd = new Command('internal').description('used by burrow itself');
  cmd.addCommand(new Command('start').argument('<id>').description('supervise the existing container ID again (burrow start)').action(async (id: string) => {
    const { runContainer } = await import('../container/run.js');
    const code = await runContainer({ cmd: [], publish: [], dns: [], uidmap: [], gidmap: [], env: [], restart: true, fixedId: id, readyFd: 3, detached: true, waitAttach: !!process.env.BURROW_WAIT_ATTACH }, globalConfig());
    process.exitCode = code;
  }));
  // run by native/burrow-holder.c when a detached container's command exited (runtime/container/teardown.ts)
  cmd.addCommand(new Command('teardown').argument('<id>').argument('<code>', 'the command\'s exit status').description('detach the network of container ID and record its exit').action(async (id: string, code: string) => {
    const { loadConfig } = await import('../config.js');
    const { teardownHeld } = await import('../container/teardown.js');
    const exitCode = Number(code);
    if (!Number.isInteger(exitCode) || exitCode < 0 || exitCode > 255) throw new Error(`internal teardown: "${code}" is not an exit status`);
    await teardownHeld(loadConfig(globalConfig()), id, exitCode);
  }));
  // the user's network namespace's CNI server, as its root (runtime/network/cni_server.ts)
  cmd.addCommand(new Command('cni-server').requiredOption('--holder <pid:start>', 'the namespace holder: leave when it goes').option('--ready-fd <fd>', 'write OK here once listening').option('--idle <seconds>', 'leave after this long without a request', '60').action(async (o: { holder: string; readyFd?: string; idle: string }) => {
    const { makeContext } = await import('../context.js');
    const { handleInside, serveInside } = await import('../network/cni_server.js');
    const sep = o.holder.indexOf(':');
    await import('../../plugins/all.js');
    // plugins run here see the user's /run (dnsname keeps its records under /run/containers),
    // and names that are not the containers' go to the stack's DNS forwarder
    delete process.env.XDG_RUNTIME_DIR;
    delete process.env.BURROW_DNS_ROOT;
    process.env.BURROW_DNS_FORWARD = (await import('../network/user_netns.js')).USER_NETNS_DNS;
    process.env.BURROW_DNS_HOLDER = o.holder; // the DNS server it starts leaves with the namespace
    await serveInside({
      holder: { pid: Number(o.holder.slice(0, sep)), startTime: o.holder.slice(sep + 1) },
      readyFd: o.readyFd !== undefined ? Number(o.readyFd) : undefined,
      idleMs: Number(o.idle) * 1000,
      handle: async (req) => handleInside(await makeContext(globalConfig(), { plugins: true }), req),
    });
    process.exit(0);
  }));
  cmd.addCommand(new Command('unpack-image').argument('<file>').argument('<root>').option('--id-map <json>', 'container id -> file owner id ({uid, gid} IdMapping lists)').action(async (file: string, root: string, o: { idMap?: string }) => {
    const { planImage, unpackImage } = await import('../container/image.js');
    const stats = await unpackImage(file, await planImage(file), root, { chown: true, spoolDir: `${root}.layers`, idMap: o.idMap ? JSON.parse(o.idMap) : undefined });
    out(`${JSON.stringify(stats)}\n`);
  }));
  return cmd;
}

export function systemCommand(globals: () => { config?: string }, out: (s: string) => void): Command {
  const cmd = new Command('system').description('maintenance');
  cmd.addCommand(new Command('gc').description('clean up after containers whose burrow process was killed (network attachments, state)').action(async () => {
    const { makeContext } = await import('../context.js');
    const { gcContainers } = await import('../container/gc.js');
    const ctx = await makeContext(globals().config, { plugins: true });
    for (const line of await gcContainers(ctx)) out(`${line}\n`);
    if (process.getuid?.() !== 0) {
      // the user's network namespace, unless a container on a user network still runs
      const { collectUserNetns } = await import('../network/user_netns.js');
      const { userNetnsNeeded } = await import('../attach/index.js');
      const done = await collectUserNetns(ctx.config.stateDir, () => userNetnsNeeded(ctx.config.stateDir));
      if (done === 'removed') out('removed the user\'s network namespace (no container needs it)\n');
      if (done === 'stale') out('removed the record of a user network namespace whose holder was gone\n');
    }
  }));
  return cmd;
}
