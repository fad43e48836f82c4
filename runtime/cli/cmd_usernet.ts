/**
 * `burrow usernet attach PID` (like `slirp4netns PID tap0`) and `burrow usernet port` (the API
 * socket's client), plus the usernet options that `burrow unshare --network usernet` shares.
 */
import { Command } from 'commander';
import { usernetSetup, type UsernetFlags } from '../network/usernet.js';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** Adds the usernet options to `cmd`. */
export function usernetOptions(cmd: Command): Command {
  return cmd
    .option('-p, --publish <spec>', 'publish a port: [hostIP:]hostPort[-end]:ctrPort[-end][/tcp|udp] (repeatable)', collect)
    .option('--mtu <n>', 'MTU of the TAP', '65520')
    .option('--cidr <cidr>', 'IPv4 network (gateway .2, DNS .3, container .100)', '10.0.2.0/24')
    .option('--cidr6 <cidr>', 'IPv6 /64 (gateway ::2, DNS ::3, container ::100)', 'fd00::/64')
    .option('--no-ipv6', 'no IPv6 in the container network')
    .option('--map-host-loopback <addr>', 'an address in the container network that reaches the host\'s 127.0.0.1/::1 (podman\'s host.containers.internal); off by default')
    .option('--api-socket <path>', 'serve the port-forwarding API (slirp4netns-style JSON) on this unix socket')
    .option('--tap <name>', 'name of the TAP inside', 'tap0');
}

export function usernetCommand(setExit: (code: number) => void, out: (s: string) => void): Command {
  const cmd = new Command('usernet').description('rootless networking: burrow\'s userspace network stack over a TAP');
  cmd.addCommand(
    usernetOptions(new Command('attach'))
      .description('run the stack for the user and network namespaces of PID (like slirp4netns PID tap0) until PID exits')
      .argument('<pid>', 'a process in the target namespaces (one you own)')
      .option('--configure', 'configure addresses, routes and MTU inside (like slirp4netns --configure)')
      .option('--ready-fd <fd>', 'write "1" to this fd once the stack runs')
      .action(async (pidText: string, o: UsernetFlags & { configure?: boolean; readyFd?: string }) => {
        const pid = Number(pidText);
        if (!Number.isInteger(pid) || pid <= 0) throw new Error(`invalid PID "${pidText}"`);
        const setup = await usernetSetup(o, !!o.configure);
        const { joinNamespaces } = await import('../../userns/unshare.js');
        const { startUsernet } = await import('../network/usernet.js');
        const fs = await import('node:fs');
        const fds = await joinNamespaces(pid, { tap: setup.tapName });
        fs.closeSync(fds.netns);
        fs.closeSync(fds.userns);
        const session = await startUsernet(pid, fds.tap!, setup);
        if (o.readyFd) {
          fs.writeSync(Number(o.readyFd), '1');
          fs.closeSync(Number(o.readyFd));
        }
        await new Promise<void>((resolve) => {
          const timer = setInterval(() => {
            if (!fs.existsSync(`/proc/${pid}`)) finish();
          }, 250);
          const finish = () => {
            clearInterval(timer);
            process.off('SIGINT', finish);
            process.off('SIGTERM', finish);
            resolve();
          };
          process.on('SIGINT', finish);
          process.on('SIGTERM', finish);
        });
        session.stop();
        setExit(0);
      }),
  );
  cmd.addCommand(
    new Command('port')
      .description('list, add or remove port forwards of a running stack through its API socket')
      .requiredOption('--api-socket <path>', 'the stack\'s API socket')
      .argument('<action>', 'ls | add SPEC | rm ID')
      .argument('[arg]', 'the port spec or forward id')
      .action(async (action: string, arg: string | undefined, o: { apiSocket: string }) => {
        const { callApi } = await import('../../net/usernet/api.js');
        if (action === 'ls') {
          const r = (await callApi(o.apiSocket, { execute: 'list_hostfwd' })) as { entries: Array<{ id: number; spec: string }> };
          for (const e of r.entries) out(`${e.id}\t${e.spec}\n`);
        } else if (action === 'add') {
          if (!arg) throw new Error('usage: burrow usernet port add SPEC');
          const r = (await callApi(o.apiSocket, { execute: 'add_hostfwd', arguments: { spec: arg } })) as { ids: number[] };
          out(`${r.ids.join('\n')}\n`);
        } else if (action === 'rm') {
          if (!arg) throw new Error('usage: burrow usernet port rm ID');
          await callApi(o.apiSocket, { execute: 'remove_hostfwd', arguments: { id: Number(arg) } });
        } else throw new Error(`unknown action "${action}" (ls, add, rm)`);
      }),
  );
  return cmd;
}
