/** The ipvlan CNI executable (host-local rides along for in-process IPAM delegation). */
import { hostLocal } from '../host-local/index.js';
import { runPlugin } from '../run.js';
import { ipvlan } from './index.js';

void runPlugin(ipvlan, [hostLocal]);
