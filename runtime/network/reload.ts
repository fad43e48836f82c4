/**
 * `burrow network reload`: puts every active attachment's firewall rules back after someone
 * flushed the firewall (a firewalld restart, `iptables -F`, `nft flush ruleset`; plugins#512).
 *
 * For each cached attachment of each network it re-runs ADD of the chained firewall plugins
 * (portmap, firewall), which are idempotent, with the cached result as prevResult and the cached
 * capability arguments, and re-creates the bridge plugin's masquerade rules. Links, addresses and
 * IPAM reservations are not touched.
 */
import { formatCniArgs } from '../../net/cni/config.js';
import { invokePlugin } from '../../net/cni/invoke.js';
import type { NetworkConfigList, PluginConf } from '../../net/cni/types.js';
import { fromCurrent } from '../../net/cni/version.js';
import { masqBackend } from '../../net/firewall/ipmasq.js';
import { parseCidr } from '../../net/ip/addr.js';
import type { Context } from '../context.js';

const RELOADABLE = new Set(['portmap', 'firewall']);

export interface ReloadReport {
  attachments: number;
  errors: string[];
}

export async function reloadNetwork(ctx: Context, list: NetworkConfigList): Promise<ReloadReport> {
  const report: ReloadReport = { attachments: 0, errors: [] };
  const version = await ctx.runtime.versionOf(list);
  for (const entry of ctx.runtime.cache.list(list.name)) {
    const rt = { containerId: entry.containerId, ifname: entry.ifName, netns: entry.netns ?? '', args: entry.cniArgs, capabilityArgs: entry.capabilityArgs };
    const result = ctx.runtime.cachedResult(list, rt);
    if (!result) continue;
    report.attachments++;
    for (const plugin of list.plugins) {
      try {
        if (plugin.type === 'bridge' && plugin.ipMasq === true) await reloadMasq(list, plugin, rt, result.ips ?? []);
        if (!RELOADABLE.has(plugin.type)) continue;
        await invokePlugin(plugin.type, {
          command: 'ADD', containerId: rt.containerId, netns: rt.netns, ifname: rt.ifname, args: formatCniArgs(rt.args ?? []),
          path: ctx.config.cniPath, stdin: ctx.runtime.pluginStdin(list, plugin, version, fromCurrent(result, '1.1.0') as never, rt),
        }, { inProcess: ctx.inProcess });
      } catch (err) {
        report.errors.push(`${entry.containerId}/${entry.ifName} (${plugin.type}): ${(err as Error).message}`);
      }
    }
  }
  return report;
}

async function reloadMasq(list: NetworkConfigList, plugin: PluginConf, rt: { containerId: string; ifname: string }, ips: { address: string }[]): Promise<void> {
  const backend = typeof plugin.ipMasqBackend === 'string' ? plugin.ipMasqBackend : undefined;
  await masqBackend(backend).setup({ network: list.name, ifname: rt.ifname, containerId: rt.containerId }, ips.map((i) => parseCidr(i.address)));
}
