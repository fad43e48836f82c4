/**
 * The dhcp IPAM plugin: ADD and CHECK ask the daemon (DHCP.Allocate), DEL tells it
 * (DHCP.Release), over the reference's RPC (rpc.ts), so it works with the reference daemon as with
 * burrow's. The socket is `ipam.daemonSocketPath`, or /run/cni/dhcp.sock.
 */
import path from 'node:path';
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { CniCode, CniError, type Result } from '../../net/cni/types.js';
import * as ipv4 from '../../net/wire/ipv4.js';
import { call, DEFAULT_SOCKET, type CmdArgs, type GobResult } from './rpc.js';

const VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

export function socketOf(config: Record<string, unknown>): string {
  const ipam = (config.ipam ?? {}) as Record<string, unknown>;
  return typeof ipam.daemonSocketPath === 'string' && ipam.daemonSocketPath ? ipam.daemonSocketPath : DEFAULT_SOCKET;
}

function cmdArgs(req: PluginRequest): CmdArgs {
  return {
    ContainerID: req.containerId, Netns: req.netns && !path.isAbsolute(req.netns) ? path.resolve(req.netns) : req.netns, IfName: req.ifname,
    Args: req.args.map(([k, v]) => `${k}=${v}`).join(';'), Path: req.path.join(':'), StdinData: req.stdin,
  };
}

const prefixOf = (mask: Buffer) => [...mask].reduce((n, b) => n + (b.toString(2).match(/1/g)?.length ?? 0), 0);
const ipText = (b: Buffer | undefined) => (b && b.length === 4 ? ipv4.formatAddr(b) : b && b.length === 16 ? (b.toString('hex').match(/.{4}/g) ?? []).join(':') : undefined);

/** The daemon's Result (gob) as a CNI result. */
export function fromGob(r: GobResult): Result {
  const ips = (r.IPs ?? []).map((ip) => ({ address: `${ipText(ip.Address.IP)}/${prefixOf(ip.Address.Mask)}`, ...(ipText(ip.Gateway) ? { gateway: ipText(ip.Gateway) } : {}) }));
  const routes = (r.Routes ?? []).map((rt) => ({ dst: `${ipText(rt.Dst.IP)}/${prefixOf(rt.Dst.Mask)}`, ...(ipText(rt.GW) ? { gw: ipText(rt.GW) } : {}) }));
  return { cniVersion: '1.1.0', ips, ...(routes.length ? { routes } : {}), dns: {} };
}

const failed = (err: unknown) => new CniError(CniCode.Internal, (err as Error).message, /dialing/.test((err as Error).message) ? 'start the DHCP daemon: "dhcp daemon" from the CNI plugin directory, or systemctl enable --now burrow-dhcp.socket (burrow run starts it by itself)' : undefined);

export const dhcp: CniPlugin = {
  name: 'dhcp',
  supportedVersions: VERSIONS,
  async add(req) {
    try {
      return fromGob((await call(socketOf(req.config), 'DHCP.Allocate', cmdArgs(req))) as GobResult);
    } catch (err) {
      throw failed(err);
    }
  },
  async check(req) {
    try {
      await call(socketOf(req.config), 'DHCP.Allocate', cmdArgs(req));
    } catch (err) {
      throw failed(err);
    }
  },
  async del(req) {
    try {
      await call(socketOf(req.config), 'DHCP.Release', cmdArgs(req));
    } catch (err) {
      throw failed(err);
    }
  },
};
