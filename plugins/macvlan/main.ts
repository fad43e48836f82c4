/** The macvlan CNI executable (host-local rides along for in-process IPAM delegation). */
import { hostLocal } from '../host-local/index.js';
import { runPlugin } from '../run.js';
import { macvlan } from './index.js';

void runPlugin(macvlan, [hostLocal]);
