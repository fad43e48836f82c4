/** `burrow network create|ls|inspect|rm|prune`, with podman's flags. */
import fs from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { BurrowError, hasCode } from '../../native/errors.js';
import type { NetworkConfigList } from '../../net/cni/types.js';
import { parseCidr } from '../../net/ip/addr.js';
import { ContainerStore, type ContainerRecord } from '../container/containers.js';
import { makeContext, type Context } from '../context.js';
import { NetworkError, type HostRoute, type NetworkInfo } from '../network/conflist.js';
import { renderRows, TemplateError } from './gotemplate.js';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function keyValues(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new NetworkError('EINVAL', `invalid ${flag} "${kv}": expected KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/**
 * Prefixes routed on the host (not default routes, not link-local), so that new subnets avoid
 * them: a subnet already routed would give the host two routes to one prefix. Empty when netlink
 * is unavailable.
 */
async function hostPrefixes(): Promise<HostRoute[]> {
  try {
    const { RtnlClient } = await import('../../net/netlink/rtnl_client.js');
    const nl = new RtnlClient('');
    try {
      return (await nl.listRoutes(undefined, 0))
        .filter((r) => r.dst !== 'default' && r.type === 'unicast' && !/^fe[89ab][0-9a-f]:/i.test(r.dst))
        .map((r) => ({ cidr: parseCidr(r.dst), dev: r.dev ?? '?' }));
    } finally {
      nl.close();
    }
  } catch {
    return [];
  }
}

/** The host's links (macvlan parent checks). Empty when netlink is unavailable. */
async function hostLinks(): Promise<{ name: string; kind: string; mode?: string }[]> {
  try {
    const { RtnlClient } = await import('../../net/netlink/rtnl_client.js');
    const nl = new RtnlClient('');
    try {
      return (await nl.listLinks()).map((l) => ({ name: l.name, kind: l.kind, mode: l.mode }));
    } finally {
      nl.close();
    }
  } catch {
    return [];
  }
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 2))).join('').trimEnd()).join('\n') + '\n';
}

/** Tears down every cached attachment of a network through its CNI chain. */
async function detachAll(c: Context, list: NetworkConfigList): Promise<number> {
  const entries = c.runtime.cache.list(list.name);
  if (!entries.length) return 0;
  if (process.getuid?.() !== 0) {
    // a user's network lives in the user's network namespace: its DELs run there
    const { userNetns } = await import('../attach/index.js');
    const { insideCni } = await import('../network/cni_server.js');
    const inside = insideCni(c.config.stateDir, c.config, async () => (await userNetns(c.config)).holder.pid);
    for (const e of entries) await inside.del(list.name, { containerId: e.containerId, ifname: e.ifName, netns: '', capabilityArgs: e.capabilityArgs });
    return entries.length;
  }
  for (const e of entries) {
    await c.runtime.delNetworkList(list, { containerId: e.containerId, ifname: e.ifName, netns: e.netns ?? '', args: e.cniArgs, capabilityArgs: e.capabilityArgs });
  }
  return entries.length;
}

/** Removes what a bridge network leaves on the host once its last attachment is gone. */
async function removeLeftovers(list: NetworkConfigList): Promise<void> {
  const main = list.plugins[0];
  if (main.type === 'bridge' && typeof main.bridge === 'string') {
    try {
      const { RtnlClient } = await import('../../net/netlink/rtnl_client.js');
      const nl = new RtnlClient('');
      try {
        const br = await nl.getLink(main.bridge);
        const links = br?.kind === 'bridge' ? await nl.listLinks() : [];
        if (br?.kind === 'bridge' && !links.some((l) => l.master === br.index)) await nl.removeLink(main.bridge);
      } finally {
        nl.close();
      }
    } catch (err) {
      if (!hasCode(err, 'ENOADDON')) throw err;
    }
  }
  const ipam = main.ipam as { type?: string; dataDir?: string } | undefined;
  if (main.type === 'macvlan' && main.hostShim === true) {
    // The host shim: its link, and the address it holds in the network's own IPAM store.
    const { hostShimName, HOST_SHIM_ID } = await import('../../plugins/macvlan/index.js');
    const shim = hostShimName(list.name);
    const { RtnlClient } = await import('../../net/netlink/rtnl_client.js');
    const nl = new RtnlClient('');
    try {
      await nl.removeLink(shim);
    } finally {
      nl.close();
    }
    if (ipam?.type === 'host-local') {
      const { DiskStore } = await import('../../net/ipam/disk_store.js');
      const store = new DiskStore(list.name, ipam.dataDir);
      try {
        await store.lock();
        store.releaseByOwner({ id: HOST_SHIM_ID, ifname: shim });
        await store.unlock();
      } finally {
        store.close();
      }
    }
  }
  if (ipam?.type === 'host-local') {
    const dir = path.join(ipam.dataDir ?? '/var/lib/cni/networks', list.name);
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return;
    }
    // Only bookkeeping left (no reservations): the store can go.
    if (names.every((n) => n === 'lock' || n.startsWith('last_reserved_ip'))) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * burrow's containers on `network` (running or exited), with what shares their namespaces first:
 * what `network rm -f` removes, as podman does.
 */
async function containersOn(c: Context, network: string): Promise<ContainerRecord[]> {
  const s = new ContainerStore(c.config.stateDir);
  const byAge = (a: ContainerRecord, b: ContainerRecord) => a.created.localeCompare(b.created);
  const on = s.list().filter((r) => r.network.mode === 'cni' && r.network.attachments.some((a) => a.network === network)).sort(byAge);
  const ids = new Set(on.map((r) => r.id));
  // --network container:X and pod members share X's network: they go first.
  const sharing = s.list().filter((r) => r.network.mode === 'container' && ids.has(r.network.target) && !ids.has(r.id)).sort(byAge);
  return [...sharing, ...on];
}

async function removeNetwork(c: Context, name: string, force: boolean): Promise<void> {
  const list = c.networks.get(name);
  if (name === c.networks.defaultName() && !list.file) throw new NetworkError('EPERM', `"${name}" is the default network and cannot be removed`);
  const containers = await containersOn(c, name);
  const users = c.runtime.cache.list(name);
  if ((users.length || containers.length) && !force) {
    const what = containers.length ? `container(s) ${containers.slice(0, 5).map((r) => r.name).join(', ')}${containers.length > 5 ? ', ...' : ''}` : `${users.length} attachment(s) (${users.slice(0, 5).map((u) => u.containerId).join(', ')}${users.length > 5 ? ', ...' : ''})`;
    throw new NetworkError('EBUSY', `network "${name}" is in use by ${what}: ${containers.length ? 'remove them first, or use -f to remove them with the network' : 'detach them first or use -f'}`);
  }
  // podman's network rm -f: the containers go (stopped, then removed), not only their attachments;
  // a pod whose infra is on the network goes whole.
  const { stop } = await import('./cmd_containers.js');
  const { removePod } = await import('./cmd_pods.js');
  const store = new ContainerStore(c.config.stateDir);
  for (const r of containers) {
    const now = store.list().find((x) => x.id === r.id);
    if (!now) continue; // went with its pod
    if (now.infra && now.pod) await removePod(now.pod, { force: true, time: 0 }, c.config.source ?? undefined);
    else {
      await stop(store, now, 0);
      await store.remove(now.id);
    }
  }
  await detachAll(c, list); // what other runtimes (podman, cnitool) attached
  c.networks.removeFile(name);
  c.runtime.removeNetworkState(name);
  if (process.getuid?.() === 0) await removeLeftovers(list);
  else {
    // the bridge is in the user's network namespace: gone with it, unless a container still needs it
    const { collectUserNetns } = await import('../network/user_netns.js');
    const { userNetnsNeeded } = await import('../attach/index.js');
    await collectUserNetns(c.config.stateDir, () => userNetnsNeeded(c.config.stateDir));
  }
}

export function networkCommand(globalOpts: () => { config?: string }, out: (s: string) => void, warn: (s: string) => void): Command {
  const net = new Command('network').description('manage CNI networks (conflists shared with podman and other runtimes)');
  const ctx = (plugins = false) => makeContext(globalOpts().config, { plugins });

  net.command('create').description('create a network')
    .argument('[name]', 'network name (default: the next free burrowN)')
    .addOption(new Option('-d, --driver <driver>', 'network driver: bridge, macvlan (-o parent=IF, -o mode=bridge|private|vepa|passthru, -o host_shim=true) or ipvlan (-o parent=IF, -o mode=l2|l3|l3s)').default('bridge'))
    .option('--subnet <cidr>', 'subnet (repeatable)', collect)
    .option('--gateway <ip>', 'gateway for the matching --subnet (repeatable)', collect)
    .option('--ip-range <range>', 'allocate addresses from this CIDR or START-END only (repeatable)', collect)
    .option('--ipv6', 'enable IPv6 (allocates an IPv6 subnet unless one is given)')
    .option('--internal', 'no gateway, masquerading or default route: containers reach only each other')
    .option('-o, --opt <key=value>', 'driver option: mtu=N, com.docker.network.bridge.name=NAME (repeatable)', collect)
    .option('--label <key=value>', 'label (repeatable)', collect)
    .option('--ipam-driver <driver>', 'IPAM driver: host-local, or dhcp (macvlan and ipvlan; the default without --subnet)')
    .option('--disable-dns', 'no container name resolution on this bridge network (on by default)')
    .action(async (nameArg: string | undefined, o: { driver: string; subnet?: string[]; gateway?: string[]; ipRange?: string[]; ipv6?: boolean; internal?: boolean; opt?: string[]; label?: string[]; ipamDriver?: string; disableDns?: boolean }) => {
      const c = await ctx();
      let name = nameArg;
      if (!name) for (let i = 1; !name; i++) if (!c.networks.exists(`burrow${i}`)) name = `burrow${i}`;
      // podman's CNI backend: an internal network has no gateway for a DNS server to listen on
      if (o.internal && !o.disableDns && o.driver === 'bridge') process.stderr.write(`WARN[0000] dnsname and internal networks are incompatible. dnsname plugin not configured for network ${name}\n`);
      const info = c.networks.create(name, {
        driver: o.driver, subnets: o.subnet, gateways: o.gateway, ipRanges: o.ipRange, ipv6: o.ipv6, internal: o.internal,
        options: keyValues(o.opt, '-o'), labels: keyValues(o.label, '--label'), ipamDriver: o.ipamDriver, disableDns: o.disableDns,
      }, await hostPrefixes(), o.driver !== 'bridge' ? await hostLinks() : []);
      out(`${info.name}\n`);
    });

  net.command('ls').alias('list').description('list networks')
    .option('--format <format>', 'table, json, or a Go template ({{.Name}}, {{.Driver}}, {{.ID}}, {{.Subnets}}...)', 'table')
    .option('-q, --quiet', 'print names only')
    .action(async (o: { format: string; quiet?: boolean }) => {
      const { networks, errors } = (await ctx()).networks.list();
      for (const e of errors) warn(`warning: skipping ${e}\n`);
      if (o.format === 'json') return out(`${JSON.stringify(networks, null, 2)}\n`);
      if (o.quiet) return out(networks.map((n) => `${n.name}\n`).join(''));
      if (o.format !== 'table') return out(templateNetworks(o.format, networks));
      const rows = [['NETWORK ID', 'NAME', 'DRIVER', 'SUBNETS']];
      for (const n of networks) rows.push([n.id.slice(0, 12), n.name, n.driver, n.subnets.map((s) => s.subnet).join(',')]);
      out(table(rows));
    });

  net.command('inspect').description('print networks as JSON')
    .option('-f, --format <format>', 'a Go template ({{.Name}}, {{range .Subnets}}{{.Subnet}}{{end}}...)')
    .argument('<names...>')
    .action(async (names: string[], o: { format?: string }) => {
      const c = await ctx();
      const infos: NetworkInfo[] = names.map((n) => c.networks.list().networks.find((x) => x.name === n) ?? (() => {
        throw new NetworkError('ENOENT', `network "${n}" not found in "${c.config.cniConfigDir}"`);
      })());
      if (o.format && o.format !== 'json') return out(templateNetworks(o.format, infos));
      out(`${JSON.stringify(infos, null, 2)}\n`);
    });

  net.command('rm').alias('remove').description('remove networks; -f first detaches their containers')
    .argument('<names...>')
    .option('-f, --force', 'detach attachments that still use the network')
    .action(async (names: string[], o: { force?: boolean }) => {
      const c = await ctx(true);
      const errors: string[] = [];
      for (const n of names) {
        try {
          await removeNetwork(c, n, !!o.force);
          out(`${n}\n`);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (errors.length) throw new BurrowError('ENETRM', errors.join('\n'));
    });

  net.command('reload').description('re-apply the firewall rules of every active attachment (after a firewall flush or restart)')
    .argument('[names...]', 'networks (default: all)')
    .action(async (names: string[]) => {
      const c = await ctx(true);
      const targets = names.length ? names : c.networks.list().networks.map((n) => n.name);
      for (const n of targets) c.networks.get(n); // an unknown name is refused before anything runs
      let reports: Array<{ network: string; attachments: number; errors: string[] }> = [];
      if (process.getuid?.() !== 0) {
        // a user's networks live in the user's network namespace, and so do their rules
        const { findUserNetns } = await import('../network/user_netns.js');
        const { callInside } = await import('../network/cni_server.js');
        const h = findUserNetns(c.config.stateDir);
        reports = h ? (await callInside(c.config.stateDir, c.config, async () => h.pid, { op: 'reload', networks: targets })) as typeof reports : targets.map((network) => ({ network, attachments: 0, errors: [] }));
      } else {
        const { reloadNetwork } = await import('../network/reload.js');
        for (const n of targets) reports.push({ network: n, ...(await reloadNetwork(c, c.networks.get(n))) });
      }
      const errors: string[] = [];
      for (const r of reports) {
        errors.push(...r.errors);
        out(`${r.network}: ${r.attachments} attachment(s) reloaded\n`);
      }
      if (errors.length) throw new BurrowError('ERELOAD', `reload incomplete:\n${errors.join('\n')}`);
    });

  net.command('prune').description('remove every network without attachments (except the default)')
    .option('-f, --force', 'accepted for podman compatibility; prune never asks')
    .action(async () => {
      const c = await ctx(true);
      for (const n of c.networks.list().networks) {
        if (n.default || !n.file || c.runtime.cache.list(n.name).length) continue;
        await removeNetwork(c, n.name, false);
        out(`${n.name}\n`);
      }
    });
  return net;
}

/**
 * A network as podman's templates see it: the Go field names of its Network type (Name, ID,
 * Driver, NetworkInterface, Subnets with Subnet/Gateway/LeaseRange...), not the JSON ones.
 */
function networkTemplateView(n: NetworkInfo): Record<string, unknown> {
  return {
    Name: n.name, ID: n.id, Driver: n.driver, NetworkInterface: n.network_interface ?? '', Created: n.created ?? '',
    Subnets: n.subnets.map((x) => ({ Subnet: x.subnet, Gateway: x.gateway ?? '', LeaseRange: x.lease_range ? { StartIP: x.lease_range.start_ip, EndIP: x.lease_range.end_ip } : null })),
    IPv6Enabled: n.ipv6_enabled, Internal: n.internal, DNSEnabled: n.dns_enabled, Labels: n.labels ?? {}, Options: n.options ?? {}, IPAMOptions: n.ipam_options,
  };
}

function templateNetworks(format: string, networks: NetworkInfo[]): string {
  try {
    return renderRows(format, networks.map(networkTemplateView), { ID: 'NETWORK ID', Name: 'NAME', Driver: 'DRIVER', NetworkInterface: 'INTERFACE', Subnets: 'SUBNETS' });
  } catch (err) {
    if (err instanceof TemplateError) throw new NetworkError('EINVAL', `template: ${err.message}`);
    throw err;
  }
}
