/**
 * dnsname (chained, after bridge): container names on the network, configured as
 * containers/dnsname is (`domainName`, `capabilities: {aliases: true}`,
 * `runtimeConfig.aliases[<network>]`, the name from CNI_ARGS `K8S_POD_NAME`), served by burrow's
 * DNS server instead of a dnsmasq per network.
 *
 * ADD writes the container's record (its addresses from prevResult; its name, aliases and
 * short id) into the network's record file, with the gateways as the server's listening
 * addresses, then has the server reload (or starts it) and waits until it serves the gateways;
 * the result is prevResult with the gateways prepended to `dns.nameservers` and the domain added
 * to `dns.search`, as containers/dnsname does. Rootful, it also accepts DNS from the bridge in
 * INPUT (input.ts), removed with the network's last record. DEL removes the record (idempotent, also without
 * prevResult or netns); CHECK verifies the record and the server. GC (CNI 1.1) drops records of
 * containers that are not among the valid attachments.
 */
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Result } from '../../net/cni/types.js';
import { DEFAULT_DOMAIN, validName, type Gateway } from '../../net/dns/records.js';
import { configError, loadArgs } from '../common.js';
import fs from 'node:fs';
import { dnsPaths, dropRecord, putRecord, readAllRecords, recordFile, syncServer, withDnsLock, type DnsPaths, type SyncOptions } from './control.js';
import { allowDns, inInitialUserns, revokeDns } from './input.js';

const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

interface DnsnameConf {
  network: string;
  domain: string;
  aliases: string[];
}

function loadConf(req: PluginRequest): DnsnameConf {
  const c = req.config;
  const network = typeof c.name === 'string' ? c.name : '';
  if (!network) throw configError('dnsname: the network config has no name');
  const d = c.domainName ?? DEFAULT_DOMAIN;
  if (typeof d !== 'string' || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(d)) throw configError(`dnsname: invalid "domainName" ${JSON.stringify(d)}`);
  const rc = (c.runtimeConfig ?? {}) as { aliases?: Record<string, unknown> };
  const raw = rc.aliases && typeof rc.aliases === 'object' ? rc.aliases[network] : undefined;
  if (raw !== undefined && !(Array.isArray(raw) && raw.every((x) => typeof x === 'string'))) throw configError(`dnsname: runtimeConfig.aliases["${network}"] must be a list of names`);
  return { network, domain: d.toLowerCase(), aliases: (raw as string[] | undefined) ?? [] };
}

/** The names of the container: K8S_POD_NAME, the aliases, the 12-character short id; each checked. */
function namesOf(req: PluginRequest, conf: DnsnameConf): string[] {
  const args = loadArgs(req, ['K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID', 'MAC', 'IP']);
  const pod = args.get('K8S_POD_NAME');
  const names = [...(pod ? [pod] : []), ...conf.aliases, req.containerId.slice(0, 12)].map((n) => n.toLowerCase());
  for (const n of names) if (!validName(n)) throw configError(`dnsname: "${n}" cannot be a DNS name (letters, digits, "_", "-" and inner dots)`);
  return [...new Set(names)];
}

function syncOptions(req: PluginRequest): SyncOptions {
  const f = req.env.BURROW_DNS_FORWARD;
  return f ? { forward: f.split(',').filter(Boolean) } : {};
}

/** The network's INPUT rules go with its last record. */
async function revokeIfEmpty(p: DnsPaths, network: string): Promise<void> {
  if (!fs.existsSync(recordFile(p, network)) && inInitialUserns()) await revokeDns(network);
}

export const dnsname: CniPlugin = {
  name: 'dnsname',
  supportedVersions: VERSIONS,

  async add(req) {
    const conf = loadConf(req);
    const prev = req.prevResult;
    if (!prev) throw new CniError(CniCode.InvalidNetworkConfig, 'dnsname: must be called as a chained plugin (no prevResult)');
    const names = namesOf(req, conf);
    const ips = prev.ips ?? [];
    const gateways: Gateway[] = [];
    for (const ip of ips) {
      if (!ip.gateway || gateways.some((g) => g.ip === ip.gateway)) continue;
      gateways.push({ ip: ip.gateway, prefix: Number(ip.address.split('/')[1]) });
    }
    if (!gateways.length) throw configError(`dnsname: network ${conf.network} gives its containers no gateway, where the DNS server would listen (is it internal? create it with DNS disabled)`);
    const v4 = ips.filter((x) => !x.address.includes(':')).map((x) => x.address.split('/')[0]);
    const v6 = ips.filter((x) => x.address.includes(':')).map((x) => x.address.split('/')[0]);
    const p = dnsPaths(req.env);
    await withDnsLock(p, async () => {
      putRecord(p, conf.network, { gateways, domain: conf.domain }, { id: req.containerId.toLowerCase(), v4, v6, names, servers: [] });
      let reply;
      try {
        reply = await syncServer(p, syncOptions(req), gateways.map((g) => g.ip));
      } catch (err) {
        dropRecord(p, conf.network, req.containerId.toLowerCase());
        throw new CniError(CniCode.Internal, `dnsname: ${(err as Error).message}`);
      }
      const unbound = gateways.filter((g) => !(reply?.bound ?? []).includes(g.ip));
      if (unbound.length === gateways.length) {
        dropRecord(p, conf.network, req.containerId.toLowerCase());
        await syncServer(p, syncOptions(req)).catch(() => null);
        const why = (reply?.pending ?? []).map((x) => `${x.ip}: ${x.error}`).join('; ');
        throw new CniError(CniCode.Internal, `dnsname: the DNS server cannot listen on port 53 of ${gateways.map((g) => g.ip).join(', ')}${why ? ` (${why})` : ''}; is another DNS server (dnsmasq, aardvark-dns) serving network ${conf.network}?`);
      }
      const bridge = prev.interfaces?.find((i) => !i.sandbox)?.name;
      if (bridge && inInitialUserns()) {
        try {
          await allowDns(conf.network, bridge, [...new Set(gateways.map((g) => (g.ip.includes(':') ? 6 : 4) as 4 | 6))]);
        } catch (err) {
          dropRecord(p, conf.network, req.containerId.toLowerCase());
          await syncServer(p, syncOptions(req)).catch(() => null);
          await revokeIfEmpty(p, conf.network);
          throw new CniError(CniCode.Internal, `dnsname: ${(err as Error).message}`);
        }
      }
    });
    const dns = { ...(prev.dns ?? {}) };
    dns.nameservers = [...gateways.map((g) => g.ip), ...(dns.nameservers ?? []).filter((n) => !gateways.some((g) => g.ip === n))];
    dns.search = [...(dns.search ?? []).filter((s) => s !== conf.domain), conf.domain];
    return { ...prev, dns } as Result;
  },

  async del(req) {
    const network = typeof req.config.name === 'string' ? req.config.name : '';
    if (!network) return;
    const p = dnsPaths(req.env);
    await withDnsLock(p, async () => {
      // a server that cannot be told now reads the files when it is next started
      if (dropRecord(p, network, req.containerId.toLowerCase())) await syncServer(p, syncOptions(req)).catch(() => null);
      // a firewall that fails now keeps the rules until the network's next DEL or GC
      await revokeIfEmpty(p, network).catch(() => null);
    });
  },

  async check(req) {
    const conf = loadConf(req);
    const p = dnsPaths(req.env);
    const { networks } = readAllRecords(p);
    const mine = networks.find((n) => n.network === conf.network)?.entries.find((e) => e.id === req.containerId.toLowerCase());
    if (!mine) throw new CniError(CniCode.Internal, `dnsname: container ${req.containerId} has no record on network ${conf.network}`);
    const reply = await withDnsLock(p, () => syncServer(p, syncOptions(req)));
    if (!reply?.ok) throw new CniError(CniCode.Internal, `dnsname: the DNS server for network ${conf.network} is not running`);
  },

  async status() {
    // nothing to wait for: the server is started on demand
  },

  async gc(req) {
    const conf = loadConf(req);
    const valid = new Set((req.validAttachments ?? []).map((a) => a.containerID.toLowerCase()));
    const p = dnsPaths(req.env);
    await withDnsLock(p, async () => {
      if (dropRecord(p, conf.network, (id) => !valid.has(id))) await syncServer(p, syncOptions(req)).catch(() => null);
      await revokeIfEmpty(p, conf.network);
    });
  },
};
