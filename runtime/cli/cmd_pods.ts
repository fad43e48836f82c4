/**
 * Pods, as podman's: `burrow pod create` starts a small infra container (the namespace helper in
 * pause mode, under a detached supervisor) that holds the network namespace and the port
 * mappings; `burrow run --pod NAME` adds containers that join its user, network, uts and ipc
 * namespaces, so they reach each other on localhost. `pod ls`, `pod inspect` and `pod rm [-f]`
 * manage them. Rootless pods share one user namespace, which is what lets members join the
 * infra's network namespace at all.
 */
import { Command } from 'commander';
import { ContainerError, ContainerStore, PodStore, type PodRecord } from '../container/containers.js';
import { ago, running, stop, store, waitExited } from './cmd_containers.js';
import { renderRows, TemplateError } from './gotemplate.js';

type Out = (s: string) => void;

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function podStatus(s: ContainerStore, p: PodRecord): { state: string; members: number; running: number } {
  const all = s.list();
  const infra = all.find((r) => r.id === p.infraId);
  const members = all.filter((r) => r.pod === p.id && !r.infra);
  const state = infra && running(infra) ? 'Running' : p.infraId ? 'Exited' : 'Created';
  return { state, members: members.length, running: members.filter(running).length };
}

export interface PodOptions {
  name?: string;
  network?: string;
  publish: string[];
  hostname?: string;
  dns: string[];
  userns?: string;
  mapHostLoopback?: string;
  /** more names of the pod on its networks with DNS (podman's pod create --network-alias) */
  networkAlias?: string[];
}

/** Creates a pod and starts its infra container; resolves to the pod's id. Nothing is left if the infra fails. */
export async function createPod(o: PodOptions, config?: string): Promise<string> {
  const s = await store(config);
  const pods = new PodStore(s.stateDir);
  const id = ContainerStore.newId();
  const name = o.name ?? `pod-${id.slice(0, 8)}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new ContainerError(`invalid pod name "${name}": letters, digits, _ . - (not first)`);
  const record: PodRecord = { id, name, created: new Date().toISOString(), infraId: '', hostname: o.hostname ?? name, network: o.network, ports: o.publish };
  pods.create(record);
  const argv = [
    ...(config ? ['--config', config] : []), 'run', '--infra', '--pod', id, '--name', `${id.slice(0, 12)}-infra`, '--hostname', record.hostname,
    ...(o.network ? ['--network', o.network] : []), ...o.publish.flatMap((p) => ['-p', p]), ...o.dns.flatMap((d) => ['--dns', d]),
    ...(o.networkAlias ?? []).flatMap((a) => ['--network-alias', a]),
    ...(o.userns ? ['--userns', o.userns] : []), ...(o.mapHostLoopback ? ['--map-host-loopback', o.mapHostLoopback] : []),
  ];
  try {
    const { startSupervisor } = await import('../container/run.js');
    record.infraId = (await startSupervisor(argv, config)).id;
  } catch (err) {
    pods.remove(id);
    throw err;
  }
  pods.write(record);
  return id;
}

/** Removes a pod: its members (running ones only with force), then its infra, then the record. */
export async function removePod(nameOrId: string, opts: { force?: boolean; time: number }, config?: string): Promise<string> {
  const s = await store(config);
  const pods = new PodStore(s.stateDir);
  const p = pods.find(nameOrId);
  const members = s.list().filter((r) => r.pod === p.id && !r.infra);
  const live = members.filter(running);
  if (live.length && !opts.force) throw new ContainerError(`pod "${p.name}" has running containers (${live.map((r) => r.name).join(', ')}): stop them or use pod rm -f`);
  // Members first (they hold the pod's namespaces too), then the infra.
  await Promise.all(live.map((r) => stop(s, r, opts.time)));
  for (const r of members) await s.remove(r.id);
  const infra = s.list().find((r) => r.id === p.infraId);
  if (infra) {
    await stop(s, infra, opts.time);
    await s.remove(infra.id);
  }
  pods.remove(p.id);
  return p.id;
}

/** Stops a pod's members, then its infra; the records stay (pod start runs them again). */
export async function stopPod(nameOrId: string, time: number, config?: string): Promise<string> {
  const s = await store(config);
  const p = new PodStore(s.stateDir).find(nameOrId);
  const members = s.list().filter((r) => r.pod === p.id && !r.infra && running(r));
  await Promise.all(members.map((r) => stop(s, r, time)));
  const infra = s.list().find((r) => r.id === p.infraId);
  if (infra && running(infra)) {
    await stop(s, infra, time);
    await waitExited(s, infra.id, 10_000);
  }
  return p.id;
}

/** Starts a pod's infra again, then its exited members (those made with --rm are gone). */
export async function startPod(nameOrId: string, config?: string): Promise<string> {
  const s = await store(config);
  const p = new PodStore(s.stateDir).find(nameOrId);
  const infra = s.list().find((r) => r.id === p.infraId);
  if (!infra) throw new ContainerError(`pod "${p.name}" has lost its infra container; remove it with "burrow pod rm -f ${p.name}"`);
  const { restartSupervisor } = await import('../container/run.js');
  if (!running(infra)) await restartSupervisor(infra.id, config);
  for (const r of s.list().filter((x) => x.pod === p.id && !x.infra && !running(x)).sort((a, b) => a.created.localeCompare(b.created))) {
    await restartSupervisor(r.id, config);
  }
  return p.id;
}

export function podCommand(globals: () => { config?: string }, out: Out): Command {
  const pod = new Command('pod').description('pods: containers sharing one network namespace (podman\'s pod model)');
  pod.addCommand(new Command('create')
    .description('create a pod; its infra process holds the network namespace and the published ports')
    .argument('[name]', 'pod name (or --name)')
    .option('--name <name>', 'pod name')
    .option('--network <net>', 'a CNI network (rootful), usernet, pasta, slirp4netns, host or none')
    .option('-p, --publish <spec>', 'publish a port of the pod (repeatable)', collect, [])
    .option('--hostname <name>', 'hostname inside (default: the pod name)')
    .option('--dns <ip>', 'nameserver (repeatable)', collect, [])
    .option('--network-alias <name>', 'another name of the pod on its networks with DNS, beside its own (repeatable)', collect, [])
    .option('--userns <mode>', 'user namespace mode of the pod (every member shares it)')
    .option('--map-host-loopback <addr>', 'usernet: an address that reaches the host\'s loopback')
    .action(async (name: string | undefined, o: PodOptions) => {
      if (name && o.name && name !== o.name) throw new ContainerError(`the pod is named twice: "${name}" and --name "${o.name}"`);
      out(`${await createPod({ ...o, name: name ?? o.name }, globals().config)}\n`);
    }));
  pod.addCommand(new Command('ls')
    .alias('ps')
    .description('list pods')
    .option('--format <fmt>', 'json, table, or a Go template ({{.Name}}, {{.Status}}, {{.ID}}, {{.NumberOfContainers}}...)', 'table')
    .option('-q, --quiet', 'ids only')
    .action(async (o: { format: string; quiet?: boolean }) => {
      const s = await store(globals().config);
      const pods = new PodStore(s.stateDir).list().sort((a, b) => a.created.localeCompare(b.created));
      if (o.quiet) {
        for (const p of pods) out(`${p.id.slice(0, 12)}\n`);
        return;
      }
      if (o.format !== 'json' && o.format !== 'table') {
        const rows = pods.map((p) => {
          const st = podStatus(s, p);
          return { ID: p.id.slice(0, 12), Id: p.id, Name: p.name, Status: st.state, Created: ago(p.created), InfraID: p.infraId.slice(0, 12), NumberOfContainers: st.members + 1, Networks: p.network ?? 'default', Ports: p.ports.join(', ') };
        });
        try {
          out(renderRows(o.format, rows, { ID: 'POD ID', Name: 'NAME', Status: 'STATUS', Created: 'CREATED', InfraID: 'INFRA ID', NumberOfContainers: '# OF CONTAINERS' }));
        } catch (err) {
          if (err instanceof TemplateError) throw new ContainerError(`template: ${err.message}`);
          throw err;
        }
        return;
      }
      if (o.format === 'json') {
        out(`${JSON.stringify(pods.map((p) => {
          const st = podStatus(s, p);
          return { Id: p.id, Name: p.name, Status: st.state, Created: p.created, InfraId: p.infraId, NumberOfContainers: st.members + 1, Networks: [p.network ?? 'default'], Ports: p.ports };
        }), null, 2)}\n`);
        return;
      }
      const table = [['POD ID', 'NAME', 'STATUS', 'CREATED', 'INFRA ID', '# OF CONTAINERS'], ...pods.map((p) => {
        const st = podStatus(s, p);
        return [p.id.slice(0, 12), p.name, st.state, ago(p.created), p.infraId.slice(0, 12), String(st.members + 1)];
      })];
      const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
      out(`${table.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n')}\n`);
    }));
  pod.addCommand(new Command('inspect')
    .description('print pods as JSON, with their containers')
    .argument('<names...>')
    .action(async (names: string[]) => {
      const s = await store(globals().config);
      const pods = new PodStore(s.stateDir);
      out(`${JSON.stringify(names.map((n) => {
        const p = pods.find(n);
        const infra = s.list().find((r) => r.id === p.infraId);
        return {
          Id: p.id, Name: p.name, Created: p.created, State: podStatus(s, p).state, Hostname: p.hostname, InfraContainerId: p.infraId,
          Network: p.network ?? 'default', Ports: p.ports, IPs: infra?.ips ?? [],
          Containers: s.list().filter((r) => r.pod === p.id).map((r) => ({ Id: r.id, Name: r.name, State: running(r) ? 'running' : r.state, Infra: !!r.infra })),
        };
      }), null, 2)}\n`);
    }));
  pod.addCommand(new Command('start')
    .description('start pods again: the infra, then every member, with their recorded options')
    .argument('<names...>')
    .action(async (names: string[]) => {
      for (const n of names) out(`${await startPod(n, globals().config)}\n`);
    }));
  pod.addCommand(new Command('stop')
    .description('stop pods: every member, then the infra (the containers stay, exited)')
    .option('-t, --time <s>', 'seconds to wait for each container before SIGKILL', '10')
    .argument('<names...>')
    .action(async (names: string[], o: { time: string }) => {
      for (const n of names) out(`${await stopPod(n, Number(o.time), globals().config)}\n`);
    }));
  pod.addCommand(new Command('restart')
    .description('stop and start pods')
    .option('-t, --time <s>', 'seconds to wait for each container before SIGKILL', '10')
    .argument('<names...>')
    .action(async (names: string[], o: { time: string }) => {
      for (const n of names) {
        await stopPod(n, Number(o.time), globals().config);
        out(`${await startPod(n, globals().config)}\n`);
      }
    }));
  pod.addCommand(new Command('rm')
    .description('remove pods (-f: stop their containers first)')
    .option('-f, --force', 'stop running containers of the pod, then remove it')
    .option('-t, --time <s>', 'seconds to wait for each container before SIGKILL', '10')
    .argument('<names...>')
    .action(async (names: string[], o: { force?: boolean; time: string }) => {
      for (const n of names) out(`${await removePod(n, { force: o.force, time: Number(o.time) }, globals().config)}\n`);
    }));
  return pod;
}
