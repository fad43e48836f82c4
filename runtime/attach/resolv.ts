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

export function readHostResolv(file = '/etc/resolv.conf'): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
