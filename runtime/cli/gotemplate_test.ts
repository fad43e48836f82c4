/** podman's --format templates: what Go's text/template prints for the forms podman users write. */
import test from 'ava';
import { goString, render, renderRows, TemplateError } from './gotemplate.js';

const ctr = {
  ID: '456fb3ba9c57', Names: 'web1', Status: 'Up 7 seconds ago', Ports: '0.0.0.0:18500->80/tcp',
  State: { Status: 'running', Pid: 12341, Running: true, ExitCode: 0 },
  Config: { Env: ['PATH=/usr/bin', 'TERM=xterm'], Labels: { app: 'web', tier: 'front' }, Cmd: ['httpd', '-f'] },
  NetworkSettings: { IPAddress: '10.88.0.2', Networks: { podman: { IPAddress: '10.88.0.2', Gateway: '10.88.0.1' }, lan: { IPAddress: '10.89.0.5', Gateway: '10.89.0.1' } } },
  Mounts: [] as unknown[],
};

test('fields, nested fields and Go\'s printing of lists, maps and nothing', (t) => {
  t.is(render('{{.Names}} {{.Status}} {{.Ports}} {{.ID}}', ctr), 'web1 Up 7 seconds ago 0.0.0.0:18500->80/tcp 456fb3ba9c57');
  t.is(render('{{.State.Status}} {{.State.Pid}} {{.NetworkSettings.IPAddress}}', ctr), 'running 12341 10.88.0.2', 'as podman printed it for the same container');
  t.is(render('{{.Config.Env}}', ctr), '[PATH=/usr/bin TERM=xterm]');
  t.is(render('{{.Config.Labels}}', ctr), 'map[app:web tier:front]');
  t.is(render('{{.Mounts}}', ctr), '[]');
  t.is(render('{{.Nope}}', ctr), '<no value>');
  t.is(goString(null), '<nil>');
  t.is(render('{{.State.Running}}', ctr), 'true');
});

test('functions and pipelines: json, index, len, join, printf, upper, eq, and x | f', (t) => {
  t.is(render('{{json .State}}', ctr), '{"Status":"running","Pid":12341,"Running":true,"ExitCode":0}');
  t.is(render('{{.Config.Cmd | json}}', ctr), '["httpd","-f"]');
  t.is(render('{{index .Config.Labels "app"}}', ctr), 'web');
  t.is(render('{{(index .NetworkSettings.Networks "lan").IPAddress}}', ctr), '10.89.0.5');
  t.is(render('{{len .Config.Env}} {{join .Config.Cmd ","}} {{upper .Names}}', ctr), '2 httpd,-f WEB1');
  t.is(render('{{printf "%-6s|%5d" .Names .State.Pid}}', ctr), 'web1  |12341');
  t.is(render('{{if eq .State.Status "running"}}up{{else}}down{{end}}', ctr), 'up');
});

test('range over maps (keys in Go\'s order) and lists, with variables; if/else if/with; trimming', (t) => {
  t.is(render('{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', ctr), '10.89.0.5 10.88.0.2 ', 'the docker idiom for every address');
  t.is(render('{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.Gateway}};{{end}}', ctr), 'lan=10.89.0.1;podman=10.88.0.1;');
  t.is(render('{{range .Mounts}}x{{else}}none{{end}}', ctr), 'none');
  t.is(render('{{with .State}}{{.Pid}}{{end}}', ctr), '12341');
  t.is(render('{{if .Nope}}a{{else if .Names}}b{{else}}c{{end}}', ctr), 'b');
  t.is(render('a  {{- .Names -}}  b', ctr), 'aweb1b');
  t.is(render('{{$n := .Names}}{{$n}}!', ctr), 'web1!');
});

test('a typed \\t is a tab; rows get newlines; table prints a header and aligns the columns', (t) => {
  t.is(renderRows('{{.Names}}\\t{{.ID}}', [ctr]), 'web1\t456fb3ba9c57\n');
  t.is(renderRows('table {{.ID}}\\t{{.Names}}', [ctr, { ...ctr, ID: 'aaaa', Names: 'a-much-longer-name' }], { ID: 'CONTAINER ID', Names: 'NAMES' }),
    'CONTAINER ID  NAMES\n456fb3ba9c57  web1\naaaa          a-much-longer-name\n');
  // as podman 4.3.1 printed `ps --format 'table {{.ID}} {{.Names}} {{.Status}}'`: spaces make columns, 12 wide at least
  t.is(renderRows('table {{.ID}} {{.Names}} {{.Status}}', [ctr, { ...ctr, ID: '4aad2fbe3b8b', Names: 'pt1', Status: 'Up 7 seconds ago' }], { ID: 'CONTAINER ID', Names: 'NAMES' }),
    'CONTAINER ID  NAMES       STATUS\n456fb3ba9c57  web1        Up 7 seconds ago\n4aad2fbe3b8b  pt1         Up 7 seconds ago\n');
  t.is(renderRows('{{json .}}', [{ a: 1 }]), '{"a":1}\n');
});

test('errors name what is wrong', (t) => {
  t.throws(() => render('{{.Names', ctr), { instanceOf: TemplateError, message: /unclosed action/ });
  t.throws(() => render('{{range .Mounts}}', ctr), { instanceOf: TemplateError, message: /missing \{\{end\}\}/ });
  t.throws(() => render('{{nosuch .Names}}', ctr), { instanceOf: TemplateError, message: /function "nosuch" not defined/ });
  t.throws(() => render('{{end}}', ctr), { instanceOf: TemplateError, message: /without a block/ });
});
