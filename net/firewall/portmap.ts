/**
 * Host port mappings (the portmap plugin's rules): what both backends share, the mappings and
 * their runs of consecutive ports. The backends are portmap_iptables.ts and portmap_nft.ts.
 */
import { parseIp, type Cidr, type Family } from '../ip/addr.js';

export type Protocol = 'tcp' | 'udp' | 'sctp';

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  /** "" for any local address. */
  hostIP: string;
}

export interface PortmapTarget {
  network: string;
  containerId: string;
  ifname: string;
}

export interface PortmapOptions {
  snat: boolean;
  masqAll: boolean;
  /** 0x2000 for the default bit 13. */
  markBit: number;
  externalSetMarkChain?: string;
  conditionsV4?: string[];
  conditionsV6?: string[];
}

export interface PortmapBackend {
  readonly kind: 'iptables' | 'nftables';
  setup(t: PortmapTarget, ctrIp: Cidr, mappings: PortMapping[], o: PortmapOptions): Promise<void>;
  /** Removes the attachment's mappings in both families; true when anything was removed. */
  teardown(t: PortmapTarget): Promise<boolean>;
  has(t: PortmapTarget, family: Family): Promise<boolean>;
  gc(network: string, validIds: Set<string>): Promise<void>;
}

/** A run of mappings: consecutive host ports, one protocol and host IP, a constant port offset. */
export interface PortRun {
  protocol: Protocol;
  hostIP: string;
  hostStart: number;
  hostEnd: number;
  containerStart: number;
}

/** Groups mappings into runs, keeping the mappings' order for runs of one (the reference's order). */
export function portRuns(mappings: PortMapping[]): PortRun[] {
  const runs: PortRun[] = [];
  for (const m of mappings) {
    const last = runs[runs.length - 1];
    if (last && last.protocol === m.protocol && last.hostIP === m.hostIP && m.hostPort === last.hostEnd + 1 && m.containerPort - m.hostPort === last.containerStart - last.hostStart) {
      last.hostEnd = m.hostPort;
    } else {
      runs.push({ protocol: m.protocol, hostIP: m.hostIP, hostStart: m.hostPort, hostEnd: m.hostPort, containerStart: m.containerPort });
    }
  }
  return runs;
}

/** Mappings that apply to `family`: hostIP of the other family is skipped; 0.0.0.0/:: mean any. */
export function mappingsFor(mappings: PortMapping[], family: Family): PortMapping[] {
  return mappings.filter((m) => !m.hostIP || parseIp(m.hostIP).family === family).map((m) => ({ ...m, hostIP: m.hostIP === '0.0.0.0' || m.hostIP === '::' ? '' : m.hostIP }));
}
