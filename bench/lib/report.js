'use strict';
// Turns the load generator's JSON lines (one per scenario case and system) into
// PREFIX.json (everything), PREFIX.md (tables, ratios bridge ÷ baseline) and PREFIX-*.png
// (gnuplot). With --check smoke it fails when a run broke or a system delivered nothing.
//
// mqttws appears twice: `bridge`, its default configuration, is the headline ("mqttws") and
// every ratio against a baseline uses it; `bridge-lean` (--resume-window-ms 0, sessionless) is
// shown beside it, with the ratio default ÷ lean — what the default's sessions cost.
//
// node bench/lib/report.js --results R.jsonl --meta META.json --prefix OUT/2026-11-27 [--plots 1] [--check smoke]
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const rows = fs.readFileSync(args.results, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const meta = JSON.parse(fs.readFileSync(args.meta, 'utf8'));
const prefix = args.prefix;
const plots = args.plots === '1';

// bench/run --threads adds bridge-t<N> (--threads N) beside the two mqttws configurations, and
// with --engine-shards bridge-s<N> (--threads N --engine-shards).
const SWEEP = [...new Set(rows.map((r) => r.system).filter((s) => /^bridge-[ts]\d+$/.test(s)))]
  .sort((a, b) => threadsOf(a) - threadsOf(b) || Number(sharded(a)) - Number(sharded(b)));
function threadsOf(system) { return Number(system.slice('bridge-t'.length)); }
function sharded(system) { return system.startsWith('bridge-s'); }
const SYSTEMS = ['bridge', 'bridge-lean', ...SWEEP, 'mosquitto-ws', 'node-bridge', 'tcp', 'b1'];
const LABEL = { bridge: 'mqttws', 'bridge-lean': 'mqttws lean', 'mosquitto-ws': 'mosquitto-ws', 'node-bridge': 'node-bridge', tcp: 'B0 (MQTT/TCP)', b1: 'B1 (floor)' };
for (const s of SWEEP) LABEL[s] = `mqttws --threads ${threadsOf(s)}${sharded(s) ? ' --engine-shards' : ''}`;
const BASELINES = ['mosquitto-ws', 'node-bridge', 'tcp', 'b1'];

const get = (r, p) => p.split('.').reduce((o, k) => (o == null ? undefined : o[k]), r && r.result);
const find = (sc, cs, sys) => rows.find((r) => r.scenario === sc && r.case === cs && r.system === sys && !r.failed);
const cases = (sc) => [...new Set(rows.filter((r) => r.scenario === sc).map((r) => r.case))];

const fmt = (v, digits = 3) => {
  if (v === undefined || v === null || Number.isNaN(v)) return '–';
  if (typeof v !== 'number') return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(2) + ' M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + ' k';
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toPrecision(digits);
};
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 && a >= 0 ? a / b : undefined);
const fmtRatio = (v) => (v === undefined ? '–' : v >= 10 ? v.toFixed(1) + '×' : v.toFixed(2) + '×');

// ---- metrics per run ----------------------------------------------------------------------------
// A latency metric exists only where samples were taken.
const lat = (key, q) => (r) => (get(r, key + '.count') > 0 ? get(r, key + '.' + q) : undefined);
const m = {
  dps: (r) => get(r, 'delivered.per_s'),
  cpu: (r) => get(r, 'system.cpu_us_per_delivery'),
  syscpu: (r) => get(r, 'system.cpu_pct_window'),
  lgcpu: (r) => get(r, 'self.cpu_pct_window'),
  lgshare: (r) => get(r, 'system.loadgen_cpu_share'),
  p50: lat('latency_us', 'p50'),
  p99: lat('latency_us', 'p99'),
  p999: lat('latency_us', 'p999'),
  max: lat('latency_us', 'max'),
  ack50: lat('ack_latency_us', 'p50'),
  ack99: lat('ack_latency_us', 'p99'),
  ack999: lat('ack_latency_us', 'p999'),
  lost: (r) => get(r, 'delivered.lost'),
  refused: (r) => get(r, 'published.errors'),
  offered: (r) => get(r, 'published.offered_per_s'),
  towait: (r) => r.upstream_waiting_after,
  rssconn: (r) => get(r, 'system.rss_bytes_per_connection'),
  setups: (r) => get(r, 'setup.per_s'),
  rssmax: (r) => get(r, 'system.rss_kb_max'),
};

// ---- headline ratios ----------------------------------------------------------------------------
// [label, scenario, case matcher, metric, higher is better]
// The case a headline row uses: the first pattern that matches one (1,000 subscribers if run).
const pickCase = (sc, res) => {
  for (const re of [].concat(res)) {
    const c = cases(sc).find((x) => re.test(x) && find(sc, x, 'bridge'));
    if (c) return c;
  }
  return undefined;
};
const largestS3 = () => {
  const cs = cases('S3').filter((c) => SYSTEMS.some((s) => find('S3', c, s)));
  return cs.sort((a, b) => Number(b.match(/n=(\d+)/)[1]) - Number(a.match(/n=(\d+)/)[1]))[0];
};
const headline = [
  ['deliveries/s at saturation', 'S1', [/^sat n=1000 p=64 q=0$/, /^sat n=\d+ p=64 q=0$/], 'dps', true],
  ['CPU µs per delivery (all processes)', 'S1', [/^sat n=1000 p=64 q=0$/, /^sat n=\d+ p=64 q=0$/], 'cpu', false],
  ['deliveries/s at saturation, 5,000 subscribers', 'S1', /^sat n=5000 p=64 q=0$/, 'dps', true],
  ['CPU µs per delivery, 5,000 subscribers', 'S1', /^sat n=5000 p=64 q=0$/, 'cpu', false],
  ['deliveries/s at saturation, QoS 1', 'S1', /^sat n=\d+ p=64 q=1$/, 'dps', true],
  ['CPU µs per delivery, QoS 1', 'S1', /^sat n=\d+ p=64 q=1$/, 'cpu', false],
  ['fan-in deliveries/s at saturation', 'S2', /^sat d=\d+ p=64 q=0$/, 'dps', true],
  ['fan-in CPU µs per delivery', 'S2', /^sat d=\d+ p=64 q=0$/, 'cpu', false],
  ['p99 latency at fixed load, QoS 0', 'S1', /^fixed .* q=0/, 'p99', false],
  ['p99 latency at fixed load, QoS 1', 'S1', /^fixed .* q=1/, 'p99', false],
  ['RSS per idle connection', 'S3', null, 'rssconn', false],
  ['connection setups/s', 'S3', null, 'setups', true],
  ['QoS 1 publish→ack p99, idle', 'S4', /^rtt idle/, 'ack99', false],
  ['QoS 1 publish→ack p99, under S1 load (half of the lowest saturation)', 'S4', /^rtt loaded/, 'ack99', false],
  ['healthy p99 with one slow consumer', 'S5', /^slow/, 'p99', false],
];
const headlineRows = [];
for (const [label, sc, re, metric, higher] of headline) {
  const cs = re ? pickCase(sc, re) : largestS3();
  if (!cs) continue;
  const b = find(sc, cs, 'bridge');
  const l = find(sc, cs, 'bridge-lean');
  const row = { metric: label, scenario: sc, case: cs, better: higher ? 'higher' : 'lower', bridge: b && m[metric](b),
    'bridge-lean': l && m[metric](l), default_over_lean: b && l ? ratio(m[metric](b), m[metric](l)) : undefined, ratios: {} };
  for (const base of BASELINES) {
    const o = find(sc, cs, base);
    row.ratios[base] = b && o ? ratio(m[metric](b), m[metric](o)) : undefined;
    row[base] = o && m[metric](o);
  }
  headlineRows.push(row);
}

// ---- default ÷ lean, S1 fan-out ------------------------------------------------------------------
// What mqttws's default configuration (sessions, a 2-minute resume window) costs against the
// sessionless one, case by case: CPU per delivery first (the cost of every delivery), then
// deliveries/s and p99.
const defaultVsLean = [];
for (const cs of cases('S1')) {
  const b = find('S1', cs, 'bridge');
  const l = find('S1', cs, 'bridge-lean');
  if (!b || !l) continue;
  const row = { case: cs };
  for (const k of ['cpu', 'dps', 'p99']) {
    row[k] = { default: m[k](b), lean: m[k](l), default_over_lean: ratio(m[k](b), m[k](l)) };
  }
  defaultVsLean.push(row);
}

// ---- the --threads sweep ----------------------------------------------------------------------------
// Per S1/S2 saturation case: deliveries/s and CPU per delivery at each thread count (with and
// without engine shards), against the smallest count swept: `speedup` (deliveries/s ÷ the
// smallest's) and `of_linear` (speedup ÷ the ratio of thread counts; 1 is linear scaling).
const sweep = [];
if (SWEEP.length) {
  const base = SWEEP[0];
  for (const sc of ['S1', 'S2']) {
    for (const cs of cases(sc).filter((c) => c.startsWith('sat'))) {
      const b = find(sc, cs, base);
      if (!b) continue;
      for (const s of SWEEP) {
        const r = find(sc, cs, s);
        if (!r) continue;
        const speedup = ratio(m.dps(r), m.dps(b));
        sweep.push({ scenario: sc, case: cs, threads: threadsOf(s), engine_shards: sharded(s), dps: m.dps(r), cpu: m.cpu(r), speedup,
          of_linear: speedup === undefined ? undefined : speedup / (threadsOf(s) / threadsOf(base)) });
      }
    }
  }
}

// ---- how the load generator's connections ended ------------------------------------------------
// It closes every connection with a WebSocket close 1000 (MQTT: DISCONNECT) and waits for the
// server to close; `fallback_resets` had to be reset when that wait ran out. For the bridges,
// `sessions_after` is the /healthz session count bench/run read after the case (0 expected).
const closing = {};
for (const r of rows) {
  if (r.failed) continue;
  const c = get(r, 'close');
  const k = closing[r.system] || (closing[r.system] = { runs: 0, attempted: 0, clean: 0, fallback_resets: 0, errors: 0, max_ms: 0, sessions_after_max: undefined, sessions_after_nonzero: 0 });
  k.runs += 1;
  if (c) {
    k.attempted += c.attempted || 0;
    k.clean += c.clean || 0;
    k.fallback_resets += c.fallback_resets || 0;
    k.errors += c.errors || 0;
    k.max_ms = Math.max(k.max_ms, c.ms || 0);
  }
  if (typeof r.sessions_after === 'number') {
    k.sessions_after_max = Math.max(k.sessions_after_max || 0, r.sessions_after);
    if (r.sessions_after > 0) k.sessions_after_nonzero += 1;
  }
}

// ---- checks -------------------------------------------------------------------------------------
const problems = [];
for (const r of rows) {
  if (r.failed) { problems.push(`${r.scenario} ${r.case} ${r.system}: the load generator failed`); continue; }
  const res = r.result;
  if (r.scenario === 'S3') {
    if (res.setup.subscribers_ok !== res.config.subscribers) problems.push(`${r.scenario} ${r.case} ${r.system}: ${res.setup.subscribers_ok}/${res.config.subscribers} connections set up (${res.errors.first})`);
  } else if (!(res.delivered.total > 0)) {
    problems.push(`${r.scenario} ${r.case} ${r.system}: delivered nothing (${res.errors.first || 'no error reported'})`);
  }
  if (!res.system.sampled) problems.push(`${r.scenario} ${r.case} ${r.system}: a watched process was not sampled (did it die?)`);
}

// ---- JSON ---------------------------------------------------------------------------------------
fs.writeFileSync(prefix + '.json', JSON.stringify({ meta, headline: headlineRows, default_vs_lean: defaultVsLean, threads_sweep: sweep, closing, problems, runs: rows }, null, 1) + '\n');

// ---- Markdown -----------------------------------------------------------------------------------
const md = [];
const base = path.basename(prefix);
md.push(`# mqttws benchmark results — ${meta.date} (${meta.mode})`, '');
md.push(`Command: \`${meta.command}\` (${meta.seconds} s of scenarios). Machine: ${meta.machine.cpu}, ${meta.machine.cpus} CPUs` +
  `${meta.machine.hypervisor ? ' (' + meta.machine.hypervisor + ' guest)' : ''}, ${meta.machine.memory_gib} GiB, Linux ${meta.machine.kernel}; ` +
  `load average at the end ${meta.machine.loadavg_at_end.join(' / ')}. Open-file limit ${meta.nofile}.`, '');
md.push(`Versions: ${meta.versions.mqttws || 'mqttws ?'} (git ${meta.versions.git}), ${meta.versions.mosquitto}, node ${meta.versions.node} ` +
  `(ws ${meta.versions.ws}, mqtt.js ${meta.versions.mqtt_js}), ${meta.versions.gxx}.`, '');
md.push('## Headline: mqttws ÷ baseline, same run', '');
md.push('`mqttws` is the bridge with its default flags, as users run it; every ratio against a baseline uses it. ' +
  '`mqttws lean` is the same bridge with `--resume-window-ms 0` (sessionless), shown beside it with the ratio default ÷ lean. ' +
  'A ratio above 1 means the first has more of the metric. Which way is better is in the second column.', '');
md.push('| metric | better | case | mqttws | mqttws lean | default ÷ lean | ÷ mosquitto-ws | ÷ node-bridge | ÷ B0 (TCP) | ÷ B1 (floor) |');
md.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
for (const h of headlineRows) {
  md.push(`| ${h.metric} | ${h.better} | ${h.scenario} ${h.case} | ${fmt(h.bridge)} | ${fmt(h['bridge-lean'])} | ${fmtRatio(h.default_over_lean)} | ${BASELINES.map((b) => fmtRatio(h.ratios[b])).join(' | ')} |`);
}
md.push('');
if (defaultVsLean.length) {
  md.push('## mqttws default ÷ lean, S1 fan-out', '');
  md.push('The cost of the default configuration (a session per client, kept 2 minutes after a drop) against the sessionless one, ' +
    'measured back to back. CPU µs per delivery counts the bridge and its Mosquitto; above 1× the default costs more. ' +
    'Deliveries/s: below 1× the default delivers less. p99: above 1× the default is slower.', '');
  md.push('| case | CPU µs/delivery default | lean | default ÷ lean | deliveries/s default | lean | default ÷ lean | p99 µs default | lean | default ÷ lean |');
  md.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of defaultVsLean) {
    md.push(`| ${r.case} | ${['cpu', 'dps', 'p99'].map((k) => `${fmt(r[k].default)} | ${fmt(r[k].lean)} | ${fmtRatio(r[k].default_over_lean)}`).join(' | ')} |`);
  }
  md.push('');
}

if (sweep.length) {
  md.push('## Threads sweep (--threads)', '');
  md.push(`mqttws with its default flags and --threads N, side by side. Speedup: deliveries/s ÷ those with --threads ${threadsOf(SWEEP[0])}; ` +
    'of linear: speedup ÷ the ratio of thread counts (1× is linear). On a machine whose cores the load generator needs too, ' +
    'these measure the machine (see Load generator below).', '');
  md.push('| scenario | case | threads | engine shards | deliveries/s | CPU µs/delivery | speedup | of linear |');
  md.push('|---|---|---:|---|---:|---:|---:|---:|');
  for (const r of sweep) md.push(`| ${r.scenario} | ${r.case} | ${r.threads} | ${r.engine_shards ? 'yes' : 'no'} | ${fmt(r.dps)} | ${fmt(r.cpu)} | ${fmtRatio(r.speedup)} | ${fmtRatio(r.of_linear)} |`);
  md.push('');
}

const table = (title, sc, cols, note) => {
  const cs = cases(sc);
  if (!cs.length) return;
  md.push(`## ${title}`, '');
  if (note) md.push(note, '');
  md.push(`| case | system | ${cols.map((c) => c[0]).join(' | ')} |`);
  md.push(`|---|---|${cols.map(() => '---:').join('|')}|`);
  for (const c of cs) {
    for (const s of SYSTEMS) {
      const r = rows.find((x) => x.scenario === sc && x.case === c && x.system === s);
      if (!r) continue;
      if (r.failed) { md.push(`| ${c} | ${LABEL[s]} | ${cols.map(() => 'failed').join(' | ')} |`); continue; }
      md.push(`| ${c} | ${LABEL[s]} | ${cols.map((col) => fmt(col[1](r))).join(' | ')} |`);
    }
  }
  md.push('');
};
const satCols = [['deliveries/s', m.dps], ['CPU µs/delivery', m.cpu], ['system CPU %', m.syscpu], ['loadgen CPU %', m.lgcpu],
  ['lost', m.lost], ['p50 µs', m.p50], ['p99 µs', m.p99]];
const latCols = [['offered msg/s', m.offered], ['deliveries/s', m.dps], ['p50 µs', m.p50], ['p99 µs', m.p99], ['p99.9 µs', m.p999], ['max µs', m.max],
  ['CPU µs/delivery', m.cpu], ['lost', m.lost]];
table('S1 fan-out', 'S1', satCols.concat([['p99.9 µs', m.p999], ['ack p99 µs', m.ack99], ['offered msg/s', m.offered]]),
  '`sat`: closed loop (a bounded number of messages in flight end to end), i.e. deliveries/s at saturation; latency there is mostly queueing. ' +
  '`fixed`: a paced publisher at `r` msg/s, for latency. CPU is utime+stime of every process of the system (the bridge *and* its Mosquitto) over the window, divided by deliveries.');
table('S2 fan-in (devices → one wildcard dashboard)', 'S2', satCols.concat([['ack p99 µs', m.ack99], ['offered msg/s', m.offered], ['refused publishes', m.refused], ['to broker: waiting at end', m.towait]]),
  '`lost` counts every publish that never reached the dashboard, including publishes the system refused (answered with an error ack), which are also counted in `refused publishes`. ' +
  '`to broker: waiting at end` (mqttws only): the publishes still waiting for the bridge\'s MQTT client right after the case (`mqttws_upstream_publishes_waiting`). mqttws delivers to its own dashboard directly (MQTT 5 local fan-out); this is how far its copies to the broker were behind.');
table('S3 idle connections', 'S3', [['setups/s', m.setups], ['setup p99 µs', (r) => get(r, 'setup.latency_us.p99')],
  ['RSS bytes/connection', m.rssconn], ['RSS after setup kB', (r) => get(r, 'system.rss_kb_setup')], ['setup CPU µs/conn', (r) => {
    const p = get(r, 'processes') || []; const n = get(r, 'setup.subscribers_ok');
    return n ? p.reduce((a, x) => a + x.cpu_us_setup, 0) / n : undefined; }]],
  'RSS per connection = (RSS after setup − RSS before) of every process of the system, over the connections; each system is restarted before this scenario.');
table('S4 QoS 1 round trip', 'S4', [['publish→ack p50 µs', m.ack50], ['publish→ack p99 µs', m.ack99], ['publish→ack p99.9 µs', m.ack999],
  ['publish→delivery p50 µs', m.p50], ['publish→delivery p99 µs', m.p99], ['lost', m.lost]]);
table('S5 one slow consumer', 'S5', [['healthy deliveries/s', m.dps], ['healthy p99 µs', m.p99], ['healthy p99.9 µs', m.p999], ['lost (healthy)', m.lost],
  ['RSS start kB', (r) => (get(r, 'processes') || []).reduce((a, p) => a + p.rss_kb_setup, 0)],
  ['RSS max kB', m.rssmax], ['RSS end kB', (r) => (get(r, 'processes') || []).reduce((a, p) => a + p.rss_kb_end, 0)],
  ['slow: owed MB (firehose)', (r) => (get(r, 'firehose.bytes') || 0) / 1e6],
  ['slow: bytes in its socket at end', (r) => get(r, 'slow.bytes_pending_at_end')], ['slow: closed by server', (r) => get(r, 'slow.closed_by_server')]],
  'The slow consumer subscribes with a 4 KiB receive buffer and never reads again; besides the healthy stream it is sent a firehose only it subscribes to, so it is owed many MB. RSS is summed over the system\'s processes: whatever the kernel does not hold for the slow consumer, the system holds or drops.');

// How connections ended.
if (Object.keys(closing).length) {
  md.push('## Connection close', '');
  md.push('At the end of every run the load generator closes each connection as a client does — a WebSocket close frame with status 1000 ' +
    '(MQTT targets: DISCONNECT first; plain TCP: DISCONNECT only) — and waits, at most 2 s for all of them, for the server to close. ' +
    '`fallback resets` are the connections it then had to reset. `sessions after` is what the bridge\'s `/healthz` reported after each case ' +
    '(a clean close ends the session; 0 expected).', '');
  md.push('| system | runs | connections closed | clean | fallback resets | errors | longest close ms | sessions after (max) | cases with sessions left |');
  md.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of SYSTEMS) {
    const k = closing[s];
    if (!k) continue;
    const bridgeLike = s.startsWith('bridge');
    md.push(`| ${LABEL[s]} | ${k.runs} | ${k.attempted} | ${k.clean} | ${k.fallback_resets} | ${k.errors} | ${fmt(k.max_ms)} | ${bridgeLike ? fmt(k.sessions_after_max) : '–'} | ${bridgeLike ? k.sessions_after_nonzero : '–'} |`);
  }
  md.push('');
}

// Load generator headroom.
const shares = rows.filter((r) => !r.failed && r.scenario !== 'S3').map((r) => ({ r, lg: m.lgcpu(r), share: m.lgshare(r) }))
  .filter((x) => typeof x.lg === 'number');
if (shares.length) {
  const maxLg = shares.reduce((a, b) => (b.lg > a.lg ? b : a));
  md.push('## Load generator', '');
  md.push(`Highest load-generator CPU in a window: ${fmt(maxLg.lg)} % of one core (${maxLg.r.scenario} ${maxLg.r.case} ${maxLg.r.system}). ` +
    'The machine has ' + meta.machine.cpus + ' cores; when the load generator and the system under test together need more than that, ' +
    'saturation numbers measure the machine, which is why the ratios (same run, same load generator) are the headline.', '');
}
if (problems.length) {
  md.push('## Problems in this run', '');
  for (const p of problems) md.push(`- ${p}`);
  md.push('');
}

// ---- plots --------------------------------------------------------------------------------------
const pngs = [];
if (plots) {
  const dir = path.dirname(prefix);
  const tmp = fs.mkdtempSync('/tmp/mqttws-plot-');
  const run = (name, script) => {
    const gp = path.join(tmp, name + '.gp');
    fs.writeFileSync(gp, script);
    try {
      execFileSync('gnuplot', [gp], { stdio: ['ignore', 'ignore', 'pipe'] });
      pngs.push(name);
    } catch (e) {
      process.stderr.write(`gnuplot failed for ${name}: ${e.stderr || e.message}\n`);
    }
  };
  // x range with room on both sides of the first and last case (log scale)
  const xr = (cs) => { const v = cs.map((x) => +x.match(/n=(\d+)/)[1]); return `set xrange [${Math.min(...v) * 0.7}:${Math.max(...v) * 1.4}]`; };
  const head = (name, title, ylabel, extra = '') => `set terminal pngcairo size 900,540 font "sans,11"\nset output "${prefix}-${name}.png"\n` +
    `set title "${title}"\nset ylabel "${ylabel}"\nset grid\nset key outside right\n${extra}\n`;
  // 1+2: S1 saturation vs subscribers (64 B, QoS 0)
  const s1 = cases('S1').filter((c) => /^sat n=\d+ p=64 q=0$/.test(c)).sort((a, b) => +a.match(/n=(\d+)/)[1] - +b.match(/n=(\d+)/)[1]);
  if (s1.length) {
    for (const [name, metric, title, ylabel, logy] of [['s1-deliveries', 'dps', 'S1 fan-out, 64 B, QoS 0: deliveries/s at saturation', 'deliveries/s', true],
      ['s1-cpu', 'cpu', 'S1 fan-out, 64 B, QoS 0: CPU per delivery, all processes', 'CPU µs per delivery', true]]) {
      const dat = path.join(tmp, name + '.dat');
      const lines = [];
      for (const c of s1) {
        const n = +c.match(/n=(\d+)/)[1];
        lines.push([n, ...SYSTEMS.map((s) => { const r = find('S1', c, s); const v = r && m[metric](r); return typeof v === 'number' ? v : 'NaN'; })].join(' '));
      }
      fs.writeFileSync(dat, lines.join('\n') + '\n');
      run(name, head(name, title, ylabel, `set xlabel "subscribers"\nset logscale x\n${logy ? 'set logscale y\n' : ''}set xtics (${s1.map((c) => c.match(/n=(\d+)/)[1]).join(',')})\n${xr(s1)}`) +
        'plot ' + SYSTEMS.map((s, i) => `"${dat}" using 1:${i + 2} with linespoints lw 2 pt 7 title "${LABEL[s]}"`).join(', ') + '\n');
    }
  }
  // 3: S3 RSS per connection
  const s3 = cases('S3').sort((a, b) => +a.match(/n=(\d+)/)[1] - +b.match(/n=(\d+)/)[1]);
  if (s3.length) {
    const dat = path.join(tmp, 's3.dat');
    fs.writeFileSync(dat, s3.map((c) => [+c.match(/n=(\d+)/)[1], ...SYSTEMS.map((s) => { const r = find('S3', c, s); const v = r && m.rssconn(r); return typeof v === 'number' ? v / 1024 : 'NaN'; })].join(' ')).join('\n') + '\n');
    run('s3-rss', head('s3-rss', 'S3 idle connections: RSS per connection, all processes', 'KiB per connection', `set xlabel "connections"\nset logscale x\nset xtics (${s3.map((c) => c.match(/n=(\d+)/)[1]).join(',')})\nset yrange [0:*]\n${xr(s3)}`) +
      'plot ' + SYSTEMS.map((s, i) => `"${dat}" using 1:${i + 2} with linespoints lw 2 pt 7 title "${LABEL[s]}"`).join(', ') + '\n');
  }
  // 4: latency at fixed load (S1 fixed q0/q1, S4 idle/loaded), clustered bars of p50/p99/p99.9
  const latCases = [...cases('S1').filter((c) => /^fixed/.test(c)).map((c) => ['S1', c, 'p50', 'p99', 'p999']),
    ...cases('S4').map((c) => ['S4', c, 'ack50', 'ack99', 'ack999'])];
  if (latCases.length) {
    const dat = path.join(tmp, 'lat.dat');
    const lines = [];
    for (const [sc, c, a, b, d] of latCases) {
      for (const s of SYSTEMS) {
        const r = find(sc, c, s);
        if (!r) continue;
        const short = sc === 'S4' ? (c.includes('loaded') ? 'S4 ack, loaded' : 'S4 ack, idle') : `S1 q${c.match(/q=(\d)/)[1]} @${c.match(/r=(\d+)/)[1]}/s`;
        lines.push(`"${short}: ${LABEL[s]}" ${m[a](r) || 'NaN'} ${m[b](r) || 'NaN'} ${m[d](r) || 'NaN'}`);
      }
    }
    fs.writeFileSync(dat, lines.join('\n') + '\n');
    run('latency', 'set terminal pngcairo size 1400,600 font "sans,10"\n' + `set output "${prefix}-latency.png"\n` +
      'set title "Latency at a fixed offered load (S1 publish→delivery; S4 QoS 1 publish→ack)"\nset ylabel "µs (log)"\nset logscale y\nset grid ytics\n' +
      'set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\nset xtics rotate by -45 font "sans,8"\nset bmargin 12\nset key top left\n' +
      `plot "${dat}" using 2:xtic(1) title "p50", "" using 3 title "p99", "" using 4 title "p99.9"\n`);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  if (pngs.length) {
    md.push('## Plots', '');
    for (const p of pngs) md.push(`![${p}](${base}-${p}.png)`, '');
  }
}
fs.writeFileSync(prefix + '.md', md.join('\n'));

if (args.check === 'smoke' && problems.length) {
  process.stderr.write('smoke check failed:\n' + problems.map((p) => '  ' + p).join('\n') + '\n');
  process.exit(1);
}
if (problems.length) process.stderr.write(`${problems.length} problem(s) noted in ${prefix}.md\n`);
const okRuns = rows.filter((r) => !r.failed).length;
console.log(`${okRuns} passed, ${rows.length - okRuns} failed`);
