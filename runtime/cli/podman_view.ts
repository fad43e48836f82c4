/**
 * burrow's container records as podman shows them: `ps` rows (table, --format templates, JSON)
 * and `inspect` documents with podman's field names (.State.Status, .NetworkSettings.Networks,
 * .Config.Env, .Mounts, .HostConfig.PortBindings), beside burrow's own fields. Pure code: the
 * time and the liveness of each record come in as arguments.
 */
import { parsePortSpec, type PortSpec } from '../../net/ports/portspec.js';
import type { ContainerRecord, MountRecord, PodRecord } from '../container/containers.js';
import { goStruct as S } from './gotemplate.js';
import { goTime, humanDuration, inspectTime } from './human.js';

export type LiveState = 'running' | 'exited' | 'created';

/** The state podman would report: running only while the supervisor lives. */
export function liveState(r: ContainerRecord, alive: boolean): LiveState {
  if (r.state === 'running' && alive) return 'running';
  if (r.state === 'exited') return 'exited';
  return r.state === 'running' ? 'exited' : 'created';
}

/** podman's STATUS: "Up 7 seconds ago", "Exited (0) 20 minutes ago", "Created". */
export function statusText(r: ContainerRecord, state: LiveState, now: number): string {
  if (state === 'running') return `Up ${humanDuration(now - Date.parse(r.startedAt ?? r.created))} ago`;
  if (state === 'exited') return `Exited (${r.exitCode ?? 0}) ${humanDuration(now - Date.parse(r.finished ?? r.created))} ago${r.teardown ? ', teardown incomplete' : ''}`;
  return 'Created';
}

function specs(r: ContainerRecord): PortSpec[] {
  return r.ports.flatMap((p) => {
    try {
      return parsePortSpec(p);
    } catch {
      return [];
    }
  });
}

/** podman's sort: by host address, then protocol, then container port. */
function sortedSpecs(r: ContainerRecord): PortSpec[] {
  return specs(r).sort((a, b) => a.hostAddr.localeCompare(b.hostAddr) || a.proto.localeCompare(b.proto) || a.guestPort - b.guestPort);
}

const hostOf = (s: PortSpec) => (s.hostAddr ? (s.hostAddr.includes(':') ? `[${s.hostAddr}]` : s.hostAddr) : '0.0.0.0');

/** ps's PORTS: 0.0.0.0:18500->80/tcp, 0.0.0.0:41489-41491->9000-9002/tcp. */
export function portsText(r: ContainerRecord): string {
  return sortedSpecs(r).map((s) => {
    const range = (p: number) => (s.count > 1 ? `${p}-${p + s.count - 1}` : `${p}`);
    return `${hostOf(s)}:${range(s.hostPort)}->${range(s.guestPort)}/${s.proto}`;
  }).join(', ');
}

/** `port NAME`: one line per port, ranges expanded ("80/tcp -> 0.0.0.0:18500"). */
export function portLines(r: ContainerRecord): Array<{ key: string; host: string }> {
  return sortedSpecs(r).flatMap((s) => Array.from({ length: s.count }, (_, i) => ({ key: `${s.guestPort + i}/${s.proto}`, host: `${hostOf(s)}:${s.hostPort + i}` })));
}

/** Container port -> host bindings, as inspect's NetworkSettings.Ports and HostConfig.PortBindings. */
export function portBindings(r: ContainerRecord): Record<string, Array<{ HostIp: string; HostPort: string }>> {
  const out: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const s of specs(r)) {
    for (let i = 0; i < s.count; i++) (out[`${s.guestPort + i}/${s.proto}`] ??= []).push(S({ HostIp: s.hostAddr, HostPort: String(s.hostPort + i) }));
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** The networks a container is on, as ps names them. */
export function networkNames(r: ContainerRecord): string[] {
  if (r.network.mode === 'cni') return r.network.attachments.map((a) => a.network);
  if (r.network.mode === 'container') return [];
  return [r.network.mode];
}

/** ps's COMMAND column: podman cuts at 20 characters ("httpd -f -p 80 -h..."). */
export function commandText(r: ContainerRecord, noTrunc = false): string {
  const c = r.command.join(' ');
  return noTrunc || c.length <= 20 ? c : `${c.slice(0, 17)}...`;
}

export interface PsContext {
  now: number;
  alive: (r: ContainerRecord) => boolean;
  pods: PodRecord[];
}

/**
 * A ps row: the fields podman's templates and --format json use. Template fields print as
 * podman's psReporter does (ID short, Names a string, Status and State the status text); the
 * JSON form has podman's ListContainer shape.
 */
export function psRow(r: ContainerRecord, c: PsContext, noTrunc = false): { template: Record<string, unknown>; json: Record<string, unknown> } {
  const state = liveState(r, c.alive(r));
  const status = statusText(r, state, c.now);
  const pod = r.pod ? c.pods.find((p) => p.id === r.pod) : undefined;
  const created = humanDuration(c.now - Date.parse(r.created));
  const started = r.startedAt ? Math.floor(Date.parse(r.startedAt) / 1000) : 0;
  const exitedAt = state === 'exited' && r.finished ? Math.floor(Date.parse(r.finished) / 1000) : -62135596800;
  const ports = sortedSpecs(r).map((s) => ({ host_ip: s.hostAddr, container_port: s.guestPort, host_port: s.hostPort, range: s.count, protocol: s.proto }));
  const labels = r.labels && Object.keys(r.labels).length ? r.labels : null;
  const json = {
    AutoRemove: !!r.spec?.rm, Command: r.command, CreatedAt: `${created} ago`, Exited: state === 'exited', ExitedAt: exitedAt, ExitCode: r.exitCode ?? 0,
    Id: r.id, Image: r.image ?? '', ImageID: '', IsInfra: !!r.infra, Labels: labels, Mounts: (r.mounts ?? []).map((m) => m.destination),
    Names: [r.name], Namespaces: {}, Networks: networkNames(r), Pid: state === 'running' ? r.initPid ?? 0 : 0, Pod: r.pod ?? '', PodName: pod?.name ?? '',
    Ports: ports.length ? ports : null, Size: null, StartedAt: started, State: state, Status: status, Created: Math.floor(Date.parse(r.created) / 1000),
  };
  const template = {
    ...json, ID: noTrunc ? r.id : r.id.slice(0, 12), Names: r.name, Command: commandText(r, noTrunc), Created: goTime(r.created), CreatedAt: goTime(r.created),
    CreatedHuman: `${created} ago`, RunningFor: `${created} ago`, Status: status, State: status, Ports: portsText(r), Labels: r.labels ?? {},
    Networks: networkNames(r).join(','), Pod: r.pod ? r.pod.slice(0, 12) : '', Mounts: (r.mounts ?? []).map((m) => m.destination), Restarts: r.restarts ?? 0,
  };
  return { template, json };
}

/** The default `ps` table, as podman prints it (--pod adds the pod's columns). */
export const PS_TABLE = 'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}';
export const PS_POD_TABLE = 'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Pod}}\t{{.PodName}}';
export const PS_HEADERS: Record<string, string> = {
  ID: 'CONTAINER ID', Image: 'IMAGE', Command: 'COMMAND', CreatedHuman: 'CREATED', Created: 'CREATED', CreatedAt: 'CREATED AT', RunningFor: 'CREATED',
  Status: 'STATUS', Ports: 'PORTS', Names: 'NAMES', Pod: 'POD ID', PodName: 'PODNAME', State: 'STATE', Networks: 'NETWORKS', Labels: 'LABELS',
  Mounts: 'MOUNTS', ExitCode: 'EXIT CODE', Pid: 'PID', IsInfra: 'IS INFRA', Restarts: 'RESTARTS',
};

/** `ps --filter`: KEY=VALUE; one key given twice matches either value, different keys all must match. */
export function psFilter(filters: string[], c: PsContext): (r: ContainerRecord) => boolean {
  const by = new Map<string, string[]>();
  for (const f of filters) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new Error(`invalid filter "${f}": expected KEY=VALUE`);
    const k = f.slice(0, eq);
    if (!['name', 'id', 'label', 'status', 'network', 'pod', 'exited', 'volume'].includes(k)) throw new Error(`invalid filter "${k}" (burrow filters on name, id, label, status, network, pod, exited, volume)`);
    by.set(k, [...(by.get(k) ?? []), f.slice(eq + 1)]);
  }
  const statuses = ['created', 'running', 'exited', 'paused', 'stopped', 'unknown'];
  for (const s of by.get('status') ?? []) if (!statuses.includes(s)) throw new Error(`invalid filter: status "${s}" (${statuses.join(', ')})`);
  return (r) => [...by].every(([k, values]) => values.some((v) => {
    switch (k) {
      case 'name': {
        let re: RegExp;
        try {
          re = new RegExp(v);
        } catch {
          return r.name.includes(v);
        }
        return re.test(r.name);
      }
      case 'id': return r.id.startsWith(v);
      case 'label': {
        const eq = v.indexOf('=');
        const key = eq < 0 ? v : v.slice(0, eq);
        return !!r.labels && key in r.labels && (eq < 0 || r.labels[key] === v.slice(eq + 1));
      }
      case 'status': {
        const s = liveState(r, c.alive(r));
        return s === v || (v === 'stopped' && s === 'exited');
      }
      case 'network': return networkNames(r).includes(v);
      case 'pod': {
        const pod = r.pod ? c.pods.find((p) => p.id === r.pod) : undefined;
        return !!pod && (pod.name === v || pod.id.startsWith(v));
      }
      case 'exited': return liveState(r, c.alive(r)) === 'exited' && String(r.exitCode ?? 0) === v;
      case 'volume': return (r.mounts ?? []).some((m) => m.name === v || m.destination === v);
      default: return false;
    }
  }));
}

/** inspect's Mounts entry for a record's mount. */
function mountView(m: MountRecord): Record<string, unknown> {
  const options = [...m.flags.filter((f) => f !== 'norec'), m.flags.includes('norec') ? 'bind' : 'rbind'];
  if (m.type === 'tmpfs') return S({ Type: 'tmpfs', Source: 'tmpfs', Destination: m.destination, Driver: '', Mode: '', Options: [...m.flags, ...(m.tmpfsOptions ? m.tmpfsOptions.split(',') : [])], RW: !m.ro, Propagation: 'rprivate' });
  return S({ Type: m.type, ...(m.name ? { Name: m.name } : {}), Source: m.source, Destination: m.destination, Driver: m.type === 'volume' ? 'local' : '', Mode: '', Options: options, RW: !m.ro, Propagation: 'rprivate' });
}

function prefixOf(address: string): { ip: string; len: number } {
  const [ip, len] = address.split('/');
  return { ip, len: Number(len ?? 0) };
}

/**
 * podman's inspect document for a record, with burrow's record beside it (lower camel case keys:
 * the supervisor, teardown state, the exact network attachments, the run's options).
 */
export function inspectView(r: ContainerRecord, alive: boolean, now: number, dir: string, pod?: PodRecord): Record<string, unknown> {
  const state = liveState(r, alive);
  const attachments = r.network.mode === 'cni' ? r.network.attachments : [];
  const nets: Record<string, Record<string, unknown>> = {};
  for (const a of attachments) {
    const v4 = a.result?.ips.find((x) => !x.address.includes(':'));
    const v6 = a.result?.ips.find((x) => x.address.includes(':'));
    nets[a.network] = S({
      EndpointID: '', Gateway: v4?.gateway ?? '', IPAddress: v4 ? prefixOf(v4.address).ip : '', IPPrefixLen: v4 ? prefixOf(v4.address).len : 0,
      IPv6Gateway: v6?.gateway ?? '', GlobalIPv6Address: v6 ? prefixOf(v6.address).ip : '', GlobalIPv6PrefixLen: v6 ? prefixOf(v6.address).len : 0,
      MacAddress: a.result?.mac ?? '', NetworkID: a.network, DriverOpts: null, IPAMConfig: null, Links: null, Aliases: [r.id.slice(0, 12)], InterfaceName: a.ifname,
    });
  }
  const first = attachments[0] ? nets[attachments[0].network] : null;
  const spec = r.spec;
  const networkMode = r.network.mode === 'cni' ? 'bridge' : r.network.mode === 'container' ? `container:${r.network.target}` : r.network.mode === 'none' ? 'none' : r.network.mode === 'host' ? 'host' : r.network.mode;
  const tmpfs = Object.fromEntries((r.mounts ?? []).filter((m) => m.type === 'tmpfs').map((m) => [m.destination, [m.tmpfsOptions, ...m.flags].filter(Boolean).join(',')]));
  const binds = (r.mounts ?? []).filter((m) => m.type !== 'tmpfs').map((m) => `${m.name ?? m.source}:${m.destination}:${m.ro ? 'ro' : 'rw'},rprivate,${[...m.flags.filter((f) => f !== 'norec'), m.flags.includes('norec') ? 'bind' : 'rbind'].join(',')}`);
  return {
    Id: r.id,
    Created: inspectTime(r.created),
    Path: r.command[0] ?? '',
    Args: r.command.slice(1),
    State: S({
      Status: state, Running: state === 'running', Paused: false, Restarting: false, OOMKilled: false, Dead: false,
      Pid: state === 'running' ? r.initPid ?? 0 : 0, ConmonPid: state === 'running' ? r.pid : 0, ExitCode: state === 'exited' ? r.exitCode ?? 0 : 0,
      Error: r.teardown ? r.teardown.errors.map((e) => `${e.step}: ${e.error}`).join('; ') : '', StartedAt: inspectTime(r.startedAt), FinishedAt: inspectTime(state === 'exited' ? r.finished : undefined),
    }),
    Image: r.image ?? '',
    ImageName: r.image ?? '',
    Rootfs: spec?.rootfs ?? (r.image ? `${dir}/rootfs` : ''),
    Pod: r.pod ?? '',
    ResolvConfPath: `${dir}/resolv.conf`,
    HostnamePath: `${dir}/hostname`,
    HostsPath: `${dir}/hosts`,
    Name: r.name,
    RestartCount: 0, // podman counts restarts by a restart policy only (burrow's own count: restarts)
    Driver: r.image ? 'burrow-image' : '',
    EffectiveCaps: r.user && r.user.uid !== 0 ? [] : r.capabilities ?? [],
    BoundingCaps: r.capabilities ?? [],
    Mounts: (r.mounts ?? []).map(mountView),
    NetworkSettings: S({
      EndpointID: '', Gateway: first?.Gateway ?? '', IPAddress: first?.IPAddress ?? (r.network.mode === 'cni' ? '' : r.ips?.[0] ?? ''), IPPrefixLen: first?.IPPrefixLen ?? 0,
      IPv6Gateway: first?.IPv6Gateway ?? '', GlobalIPv6Address: first?.GlobalIPv6Address ?? '', GlobalIPv6PrefixLen: first?.GlobalIPv6PrefixLen ?? 0, MacAddress: first?.MacAddress ?? '',
      Bridge: '', SandboxID: '', HairpinMode: false, Ports: portBindings(r), SandboxKey: state === 'running' && r.initPid ? `/proc/${r.initPid}/ns/net` : '',
      ...(r.network.mode === 'cni' ? { Networks: nets } : {}),
    }),
    IsInfra: !!r.infra,
    Config: S({
      Hostname: r.hostname ?? r.id.slice(0, 12), Domainname: '', User: r.user?.spec ?? '', AttachStdin: !!r.interactive && !r.detached, AttachStdout: !r.detached, AttachStderr: !r.detached,
      Tty: !!r.tty, OpenStdin: !!r.interactive, StdinOnce: false, Env: r.env ?? [], Cmd: r.command, Image: r.image ?? '', Volumes: null, WorkingDir: r.workdir ?? '/',
      Entrypoint: spec?.entrypoint ?? (r.imageConfig?.Entrypoint?.join(' ') ?? ''), Labels: r.labels && Object.keys(r.labels).length ? r.labels : null,
      Annotations: { 'io.podman.annotations.autoremove': spec?.rm ? 'TRUE' : 'FALSE', 'io.podman.annotations.init': spec?.init ? 'TRUE' : 'FALSE', 'io.podman.annotations.privileged': r.privileged ? 'TRUE' : 'FALSE' },
      StopSignal: 15, StopTimeout: 10, Umask: '0022', Timeout: 0,
    }),
    HostConfig: S({
      Binds: binds, NetworkMode: networkMode, PortBindings: portBindings(r), RestartPolicy: S({ Name: '', MaximumRetryCount: 0 }), AutoRemove: !!spec?.rm,
      CapAdd: spec?.capAdd ?? [], CapDrop: spec?.capDrop ?? [], Dns: spec?.dns ?? [], DnsOptions: [], DnsSearch: [], ExtraHosts: spec?.addHost ?? [],
      IpcMode: r.network.mode === 'container' ? `container:${r.network.target}` : 'private', PidMode: 'private', Privileged: !!r.privileged, ReadonlyRootfs: !!r.readOnly,
      SecurityOpt: spec?.securityOpt ?? [], Tmpfs: tmpfs, UTSMode: r.network.mode === 'container' ? `container:${r.network.target}` : 'private',
      UsernsMode: spec?.userns ?? '', Init: !!spec?.init, LogConfig: S({ Type: 'k8s-file', Config: null, Path: `${dir}/ctr.log`, Tag: '', Size: '0B' }),
    }),
    ...(pod ? { PodName: pod.name } : {}),
    // burrow's own record, beside podman's fields (its keys are lower camel case: no clashes)
    ...r, running: state === 'running', status: statusText(r, state, now),
  };
}
