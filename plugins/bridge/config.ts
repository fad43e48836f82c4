/** The bridge plugin's configuration: every reference option, validated with messages that name the key. */
import type { PluginRequest } from '../../net/cni/skel.js';
import type { Dns } from '../../net/cni/types.js';
import { parseMac, validIfname } from '../../net/netlink/client.js';
import { configError, ipamType, loadArgs, optBool, optInt, optString } from '../common.js';

export interface VlanTrunkEntry {
  minID: number;
  maxID: number;
}

export interface BridgeConf {
  network: string;
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  ipMasqBackend?: 'iptables' | 'nftables';
  mtu?: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  vlan: number;
  vlanTrunk: VlanTrunkEntry[];
  preserveDefaultVlan: boolean;
  macspoofchk: boolean;
  enabledad: boolean;
  disableContainerInterface: boolean;
  portIsolation: boolean;
  ipam: string | null;
  dns?: Dns;
  /** Requested container MAC: runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC. */
  mac?: string;
}

type Obj = Record<string, unknown>;

function parseTrunk(v: unknown): VlanTrunkEntry[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw configError('invalid "vlanTrunk": expected a list of {"id": N} or {"minID": N, "maxID": M}');
  const check = (n: unknown, what: string): number => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 4094) throw configError(`invalid VLAN ID ${JSON.stringify(n)} in vlanTrunk ${what} (must be between 1 and 4094)`);
    return n;
  };
  return v.map((e, i) => {
    const o = (e ?? {}) as Obj;
    if (o.id !== undefined) {
      const id = check(o.id, `[${i}].id`);
      return { minID: id, maxID: id };
    }
    if (o.minID === undefined || o.maxID === undefined) throw configError(`invalid vlanTrunk[${i}]: give "id" or both "minID" and "maxID"`);
    const minID = check(o.minID, `[${i}].minID`);
    const maxID = check(o.maxID, `[${i}].maxID`);
    if (minID > maxID) throw configError(`invalid vlanTrunk[${i}]: minID ${minID} is greater than maxID ${maxID}`);
    return { minID, maxID };
  });
}

function requestedMac(req: PluginRequest): string | undefined {
  const rc = req.config.runtimeConfig as Obj | undefined;
  const cniArgs = ((req.config.args as Obj | undefined)?.cni ?? undefined) as Obj | undefined;
  const env = loadArgs(req, ['MAC', 'IP']).get('MAC');
  const mac = (rc?.mac ?? cniArgs?.mac ?? env) as unknown;
  if (mac === undefined || mac === '') return undefined;
  if (typeof mac !== 'string') throw configError(`invalid MAC ${JSON.stringify(mac)}`);
  try {
    parseMac(mac);
  } catch {
    throw configError(`invalid MAC address "${mac}"`);
  }
  return mac.toLowerCase();
}

/** Parses and validates a bridge request's config. Throws CniError(7). */
export function parseBridgeConf(req: PluginRequest): BridgeConf {
  const c = req.config;
  const bridge = optString(c, 'bridge') ?? 'cni0';
  if (!validIfname(bridge)) throw configError(`invalid bridge name "${bridge}": 1-15 characters without "/", ":" or whitespace`);
  const hairpinMode = optBool(c, 'hairpinMode');
  const promiscMode = optBool(c, 'promiscMode');
  if (hairpinMode && promiscMode) throw configError('cannot set hairpin mode and promiscuous mode at the same time');
  const vlan = optInt(c, 'vlan', 0, 4094);
  if (c.vlan !== undefined && vlan === undefined) throw configError(`invalid VLAN ID ${JSON.stringify(c.vlan)} (must be between 0 and 4094)`);
  const backend = optString(c, 'ipMasqBackend');
  if (backend !== undefined && backend !== 'iptables' && backend !== 'nftables') {
    throw configError(`invalid "ipMasqBackend" "${backend}": expected "iptables" or "nftables"`);
  }
  const isDefaultGateway = optBool(c, 'isDefaultGateway');
  const disableContainerInterface = optBool(c, 'disableContainerInterface');
  const ipam = ipamType(c);
  if (disableContainerInterface && ipam) throw configError('cannot use IPAM when "disableContainerInterface" is set');
  const dns = c.dns && typeof c.dns === 'object' && Object.keys(c.dns as Obj).length ? (c.dns as Dns) : undefined;
  return {
    network: typeof c.name === 'string' ? c.name : '',
    bridge,
    isGateway: optBool(c, 'isGateway') || isDefaultGateway,
    isDefaultGateway,
    forceAddress: optBool(c, 'forceAddress'),
    ipMasq: optBool(c, 'ipMasq'),
    ipMasqBackend: backend as BridgeConf['ipMasqBackend'],
    mtu: optInt(c, 'mtu', 0, 65535) || undefined,
    hairpinMode,
    promiscMode,
    vlan: vlan ?? 0,
    vlanTrunk: parseTrunk(c.vlanTrunk),
    preserveDefaultVlan: optBool(c, 'preserveDefaultVlan', true),
    macspoofchk: optBool(c, 'macspoofchk'),
    enabledad: optBool(c, 'enabledad'),
    disableContainerInterface,
    portIsolation: optBool(c, 'portIsolation'),
    ipam,
    dns,
    mac: requestedMac(req),
  };
}
