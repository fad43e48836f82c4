/**
 * ipvlan: like macvlan (plugins/macvlan, which serves both), but the sub-interfaces share the
 * parent's MAC; modes l2, l3 and l3s; master, mtu, linkInContainer and IPAM as the reference.
 */
import { makeMacvlan } from '../macvlan/index.js';

export const ipvlan = makeMacvlan(undefined, 'ipvlan');
