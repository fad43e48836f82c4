/** Registers every burrow plugin for the runtime's in-process fast path. */
import { bridge } from './bridge/index.js';
import { dhcp } from './dhcp/index.js';
import { dnsname } from './dnsname/index.js';
import { firewall } from './firewall/index.js';
import { hostLocal } from './host-local/index.js';
import { ipvlan } from './ipvlan/index.js';
import { loopback } from './loopback/index.js';
import { macvlan } from './macvlan/index.js';
import { portmap } from './portmap/index.js';
import { registerPlugin } from './registry.js';
import { tuning } from './tuning/index.js';

export const ALL_PLUGINS = [bridge, dhcp, dnsname, firewall, hostLocal, ipvlan, loopback, macvlan, portmap, tuning];
for (const p of ALL_PLUGINS) registerPlugin(p);
