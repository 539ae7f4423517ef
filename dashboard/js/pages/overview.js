// Overview: the gateway's health, and live charts of the stats tick that
// GET /events sends every second (requests/s, status rates, cache hit
// ratio, latency percentiles, Redis and fleet state).
import {api} from '../api.js';
import {COLORS, chartAvailable, lineChart} from '../charts.js';
import {errorState, fmtDuration, fmtNum, h, loading, replace, section, unavailable} from '../dom.js';
import * as stream from '../stream.js';

const POINTS = 120; // two minutes of ticks
// How long an open stream may go without a stats tick before the page says
// this gateway sends none.
const STATS_GRACE_MS = 3500;

function stat(label, id) {
  return h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, label),
           h('div', {class: 'stat-value', id}, '—'));
}

function chartBox(title, id) {
  return h('div', {class: 'chart-card'}, h('h3', {}, title),
           h('div', {class: 'chart-box'}, h('canvas', {id, 'aria-label': title, role: 'img'})));
}

// <quiet>: a refresh, which keeps what is shown until the answer comes.
async function loadHealth(box, quiet) {
  if (!quiet) replace(box, loading('health'));
  try {
    const hl = await api('GET', '/health');
    replace(box, h('dl', {class: 'facts'},
                   h('dt', {}, 'Status'), h('dd', {class: 'ok-text'}, hl.status),
                   h('dt', {}, 'Version'), h('dd', {}, hl.version),
                   h('dt', {}, 'Workers'), h('dd', {}, fmtNum(hl.workers)),
                   h('dt', {}, 'Connections'), h('dd', {id: 'health-conns'}, fmtNum(hl.connections)),
                   h('dt', {}, 'Uptime'), h('dd', {}, fmtDuration(hl.uptime_seconds))));
    const conns = document.getElementById('stat-conns');
    if (conns && conns.textContent === '—') conns.textContent = fmtNum(hl.connections);
  } catch (e) {
    replace(box, errorState(e, () => loadHealth(box)));
  }
}

function makeCharts() {
  const labels = [];
  const series = (n) => Array.from({length: n}, () => []);
  const [rps] = series(1);
  const [r2, r4, r5, r429] = series(4);
  const [hit] = series(1);
  const [p50, p95, p99] = series(3);
  const charts = [
    lineChart(document.getElementById('chart-rps'), labels,
              [{label: 'requests/s', color: COLORS.blue, data: rps}]),
    lineChart(document.getElementById('chart-rates'), labels, [
      {label: '2xx', color: COLORS.green, data: r2},
      {label: '4xx', color: COLORS.amber, data: r4},
      {label: '5xx', color: COLORS.red, data: r5},
      {label: '429', color: COLORS.purple, data: r429},
    ]),
    lineChart(document.getElementById('chart-hits'), labels,
              [{label: 'hit ratio %', color: COLORS.teal, data: hit}], {max: 100}),
    lineChart(document.getElementById('chart-latency'), labels, [
      {label: 'p50', color: COLORS.green, data: p50},
      {label: 'p95', color: COLORS.amber, data: p95},
      {label: 'p99', color: COLORS.red, data: p99},
    ]),
  ];
  function push(s) {
    const rates = s.rates || {};
    const cache = s.cache || {};
    const lat = s.latency_ms || {};
    labels.push(new Date(s.ts || Date.now()).toISOString().slice(11, 19));
    rps.push(s.rps);
    r2.push(rates['2xx']);
    r4.push(rates['4xx']);
    r5.push(rates['5xx']);
    r429.push(rates['429']);
    hit.push(cache.hit_ratio === null || cache.hit_ratio === undefined ? null
                                                                       : cache.hit_ratio * 100);
    p50.push(lat.p50);
    p95.push(lat.p95);
    p99.push(lat.p99);
    if (labels.length > POINTS) {
      for (const a of [labels, rps, r2, r4, r5, r429, hit, p50, p95, p99]) a.shift();
    }
    for (const c of charts) c.update('none');
  }
  return {push, destroy: () => charts.forEach((c) => c.destroy())};
}

function showTick(s) {
  const set = (id, text, cls) => {
    const el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    if (cls !== undefined) el.className = 'stat-value ' + cls;
  };
  set('stat-rps', fmtNum(s.rps, 1));
  const ratio = s.cache ? s.cache.hit_ratio : null;
  set('stat-hit', ratio === null || ratio === undefined ? '—' : fmtNum(ratio * 100, 1) + ' %');
  const p99 = s.latency_ms ? s.latency_ms.p99 : null;
  set('stat-p99', p99 === null || p99 === undefined ? '—' : fmtNum(p99, 1) + ' ms');
  set('stat-redis', s.redis || '—', s.redis === 'down' ? 'bad-text' :
                                    s.redis === 'up' ? 'ok-text' : '');
  set('stat-fleet', s.fleet === undefined ? '—' : fmtNum(s.fleet) + ' gateway' +
                                                   (s.fleet === 1 ? '' : 's'));
  set('stat-conns', fmtNum(s.connections));
}

export function render(main) {
  const healthBox = h('div', {});
  const live = h('div', {id: 'live'}, loading('live stats'));
  main.append(
    h('h1', {}, 'Overview'),
    h('div', {class: 'grid-2'}, section('Gateway', healthBox),
      section('Now', h('div', {class: 'stats'}, stat('Requests/s', 'stat-rps'),
                       stat('Cache hit ratio', 'stat-hit'), stat('p99 latency', 'stat-p99'),
                       stat('Redis', 'stat-redis'), stat('Fleet', 'stat-fleet'),
                       stat('Connections', 'stat-conns')))),
    section('Live (one point a second, last two minutes)', live));
  loadHealth(healthBox);
  const healthTimer = setInterval(() => loadHealth(healthBox, true), 10000);

  let charts = null;
  let waitTimer = null;
  function startCharts() {
    if (charts) return;
    if (!chartAvailable()) {
      replace(live, unavailable('Charts', 'the chart library did not load.'));
      return;
    }
    replace(live, h('div', {class: 'charts'}, chartBox('Requests per second', 'chart-rps'),
                    chartBox('Responses per second by status', 'chart-rates'),
                    chartBox('Cache hit ratio (%)', 'chart-hits'),
                    chartBox('Latency (ms)', 'chart-latency')));
    charts = makeCharts();
  }
  function onEvent(type, data) {
    if (type !== 'stats') return;
    startCharts();
    if (charts) charts.push(data);
    showTick(data);
  }
  // Without a tick soon after the stream opened, this gateway has none.
  function checkTick() {
    if (stream.hasStats()) {
      startCharts();
      return;
    }
    if (stream.liveFor() > STATS_GRACE_MS && live.dataset.state !== 'no-stats') {
      replace(live, unavailable('Live stats',
        'The event stream is open but carries no stats tick (event "stats" of GET /events): ' +
        'this gateway is older than the dashboard. Keys, usage and the other pages work.'));
      live.dataset.state = 'no-stats';
    }
    waitTimer = setTimeout(checkTick, 500);
  }
  const off = stream.subscribe(onEvent);
  const last = stream.latestStats();
  if (last) onEvent('stats', last);
  checkTick();
  return () => {
    off();
    clearInterval(healthTimer);
    clearTimeout(waitTimer);
    if (charts) charts.destroy();
  };
}
