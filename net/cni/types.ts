/**
 * CNI data types (spec 1.1.0, with the older result shapes it converts to),
 * the spec's error codes, and the CniError that carries them.
 */
import { BurrowError } from '../../native/errors.js';

/** Error codes from the spec (SPEC.md section 5) plus skel's 8 and 999. */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  InvalidNetns: 8,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  PluginNotAvailableLimitedConnectivity: 51,
  Internal: 999,
} as const;

/** The spec's error result: printed on stdout with exit status 1. */
export interface CniErrorJson {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}

/** An error with a CNI code. Plugins throw it; the runtime raises it for plugin failures. */
export class CniError extends BurrowError {
  readonly cniCode: number;
  readonly details?: string;
  /** The plugin type that failed, when the runtime raised it. */
  readonly plugin?: string;
  /** The plugin's own message, without the runtime's "plugin X failed" prefix. */
  readonly pluginMsg?: string;
  constructor(cniCode: number, msg: string, details?: string, opts: { plugin?: string; pluginMsg?: string; cause?: unknown } = {}) {
    super(`CNI_${cniCode}`, msg, { cause: opts.cause });
    this.cniCode = cniCode;
    this.details = details;
    this.plugin = opts.plugin;
    this.pluginMsg = opts.pluginMsg;
  }

  toJSON(cniVersion?: string): CniErrorJson {
    const out: CniErrorJson = { code: this.cniCode, msg: this.message };
    if (cniVersion) out.cniVersion = cniVersion;
    if (this.details) out.details = this.details;
    return out;
  }
}

export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface IpConfig {
  /** CIDR: "10.88.0.2/16" */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** The 1.0.0/1.1.0 result. burrow's plugins and runtime work in this shape. */
export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IpConfig[];
  routes?: Route[];
  dns?: Dns;
}

/** 0.3.0, 0.3.1 and 0.4.0 results: as 1.0.0 but each IP carries "version". */
export interface Result040 {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: (IpConfig & { version: '4' | '6' })[];
  routes?: { dst: string; gw?: string }[];
  dns?: Dns;
}

export interface Ip020 {
  ip: string;
  gateway?: string;
  routes?: { dst: string; gw?: string }[];
}

/** 0.1.0 and 0.2.0 results. */
export interface Result020 {
  cniVersion: string;
  ip4?: Ip020;
  ip6?: Ip020;
  dns?: Dns;
}

/** One plugin object of a conflist, as parsed. Unknown keys are kept. */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

/** A parsed, validated network configuration list. */
export interface NetworkConfigList {
  name: string;
  cniVersion: string;
  cniVersions?: string[];
  disableCheck: boolean;
  disableGC: boolean;
  loadOnlyInlinedPlugins: boolean;
  plugins: PluginConf[];
  /** The exact bytes it was parsed from (libcni caches these). */
  bytes: Buffer;
  /** The file it came from, if any. */
  file?: string;
  /** The whole parsed top-level object, unknown keys included. */
  raw: Record<string, unknown>;
}

/** A GC attachment key. */
export interface Attachment {
  containerID: string;
  ifname: string;
}
