/**
 * Reading and changing one iptables table per address family, shared by the ipMasq, portmap and
 * firewall backends: one iptables-save reads, one iptables-restore --noflush batch applies.
 */
import type { Family } from '../ip/addr.js';
import { mustRun, runTool } from './run.js';

/** A table as iptables-save prints it: chain names and "-A ..." rule lines. */
export interface TableState {
  chains: Set<string>;
  rules: string[];
}

/** The section of `table` in iptables-save output. */
export function parseTable(save: string, table: string): TableState {
  const chains = new Set<string>();
  const rules: string[] = [];
  let inside = false;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) inside = line === `*${table}`;
    else if (!inside) continue;
    else if (line.startsWith(':')) chains.add(line.slice(1).split(' ')[0]);
    else if (line.startsWith('-A ')) rules.push(line);
  }
  return { chains, rules };
}

function tools(family: Family) {
  return family === 4 ? { save: 'iptables-save', restore: 'iptables-restore' } : { save: 'ip6tables-save', restore: 'ip6tables-restore' };
}

/**
 * Reads `table`. Saves every table rather than `-t <table>`, because iptables-nft creates a
 * missing table when asked for it by name: reading must not change the host.
 */
export async function readTable(family: Family, table: string): Promise<TableState> {
  return parseTable(await mustRun(`read the ${table} table`, tools(family).save, []), table);
}

/** Reads several tables with one iptables-save. */
export async function readTables<T extends string>(family: Family, tables: T[]): Promise<Record<T, TableState>> {
  const save = await mustRun(`read the ${tables.join(' and ')} tables`, tools(family).save, []);
  return Object.fromEntries(tables.map((t) => [t, parseTable(save, t)])) as Record<T, TableState>;
}

/** Applies each table's lines in one iptables-restore (one atomic batch per table); nothing runs when there is nothing to do. */
export async function applyTables(family: Family, lines: Record<string, string[]>, action: string): Promise<void> {
  const text = Object.entries(lines).filter(([, l]) => l.length).map(([t, l]) => batch(t, l)).join('');
  if (!text) return;
  await mustRun(action, tools(family).restore, ['-w', '--noflush'], text);
}

function batch(table: string, lines: string[]): string {
  return `*${table}\n${lines.join('\n')}\nCOMMIT\n`;
}

/** Applies `lines` to `table` in one atomic batch; nothing runs when there is nothing to do. */
export async function applyTable(family: Family, table: string, lines: string[], action: string): Promise<void> {
  if (!lines.length) return;
  await mustRun(action, tools(family).restore, ['-w', '--noflush'], batch(table, lines));
}

/** Like applyTable, but reports failure (e.g. a rule to delete is not there) instead of throwing. */
export async function tryApplyTable(family: Family, table: string, lines: string[]): Promise<boolean> {
  return (await runTool(tools(family).restore, ['-w', '--noflush'], batch(table, lines))).code === 0;
}

