/** resolv.conf for a container, as podman writes it. Pure over the host's file; `readHostResolv` reads it. */
import fs from 'node:fs';

/**
 * --dns when given; else the host's resolv.conf, without nameservers on the host's loopback
 * (127.0.0.x of systemd-resolved, ::1) unless the container shares the host's network, where
 * they are reachable.
 */
export function resolvConf(dns: string[], hostText: string, o: { hostNetwork?: boolean } = {}): string {
  if (dns.length) return dns.map((d) => `nameserver ${d}\n`).join('');
  if (!hostText.trim()) return '';
  if (o.hostNetwork) return hostText.endsWith('\n') ? hostText : `${hostText}\n`;
  const lines = hostText.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  return `${lines.join('\n').trim()}\n`;
}

/**
 * resolv.conf with the networks' own nameservers first (a DNS-enabled network's gateway, which
 * forwards other names on) and their search domains, then `base`'s other lines, as podman writes it.
 */
export function withNetworkDns(base: string, dns: { nameservers: string[]; search: string[] } | undefined): string {
  if (!dns || (!dns.nameservers.length && !dns.search.length)) return base;
  const lines = base.split('\n').filter((l) => l.trim());
  const baseSearch = lines.filter((l) => /^\s*(search|domain)\s/.test(l)).flatMap((l) => l.trim().split(/\s+/).slice(1));
  const servers = lines.filter((l) => /^\s*nameserver\s/.test(l)).map((l) => l.trim().split(/\s+/)[1]);
  const rest = lines.filter((l) => !/^\s*(search|domain|nameserver)\s/.test(l));
  const search = [...new Set([...dns.search, ...baseSearch])];
  const ns = [...new Set([...dns.nameservers, ...servers])];
  return [...(search.length ? [`search ${search.join(' ')}`] : []), ...ns.map((n) => `nameserver ${n}`), ...rest].join('\n') + '\n';
}

export function readHostResolv(file = '/etc/resolv.conf'): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
