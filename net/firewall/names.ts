/**
 * Names, hashes and comments that identify an attachment's firewall rules,
 * byte-for-byte as the reference plugins build them (pkg/utils), so that
 * either implementation's DEL finds the other's rules.
 */
import { digestHex } from '../../native/mod.js';

/** ("CNI-" + prefix + hex(sha512(name + id)))[:28] — utils.MustFormatHashWithPrefix(28, ...). */
export function hashedChainName(prefix: string, network: string, containerId: string): string {
  const full = `CNI-${prefix}${digestHex('sha512', network + containerId)}`;
  return full.slice(0, 28);
}

/** The bridge/ptp ipMasq chain: utils.FormatChainName(name, id). */
export function masqChainName(network: string, containerId: string): string {
  return hashedChainName('', network, containerId);
}

/** Go's %q for the plain strings CNI allows (names and IDs match [a-zA-Z0-9_.-]). */
function goQuote(s: string): string {
  return JSON.stringify(s);
}

/** utils.FormatComment(name, id): `name: "N" id: "ID"`. */
export function masqComment(network: string, containerId: string): string {
  return `name: ${goQuote(network)} id: ${goQuote(containerId)}`;
}

/** The nftables ipmasq network hash: hex(sha512(network))[:16]. */
export function nftNetworkHash(network: string): string {
  return digestHex('sha512', network).slice(0, 16);
}

/** The nftables ipmasq instance hash: "<nethash>-<hex(sha512(ifname:id))[:16]>". */
export function nftInstanceHash(network: string, ifname: string, containerId: string): string {
  return `${nftNetworkHash(network)}-${digestHex('sha512', `${ifname}:${containerId}`).slice(0, 16)}`;
}

/** The nftables ipmasq rule comment, at most 128 bytes (knftables.CommentLengthMax). */
export function nftMasqComment(network: string, ifname: string, containerId: string): string {
  const strip = (s: string) => s.replaceAll('"', '');
  const c = `${nftInstanceHash(network, ifname, containerId)}, net: ${strip(network)}, if: ${strip(ifname)}, id: ${strip(containerId)}`;
  return c.length > 128 ? c.slice(0, 128) : c;
}
