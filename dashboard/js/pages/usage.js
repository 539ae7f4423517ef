// Usage per key (or identity): requests by hour or day as a chart and a
// table, the quota burn-down of the month, a CSV download; without a key,
// the top identities of the day.
import {api, apiText, isMissing} from '../api.js';
import {COLORS, chartAvailable, lineChart} from '../charts.js';
import {empty, errorState, field, fmtNum, fmtTime, h, loading, replace, section, table,
        unavailable} from '../dom.js';

function sumByPeriod(rows) {
  const periods = new Map();
  for (const r of rows) {
    let p = periods.get(r.period_start);
    if (!p) {
      p = {period_start: r.period_start, requests: 0, ok: 0, client: 0, server: 0, rejected: 0,
           units: 0, cost: 0, bytes_out: 0};
      periods.set(r.period_start, p);
    }
    p.requests += r.requests;
    p.ok += r.status['2xx'] + r.status['3xx'] + r.status['1xx'];
    p.client += r.status['4xx'];
    p.server += r.status['5xx'];
    p.rejected += r.rejections.limit + r.rejections.quota + r.rejections.ban;
    p.units += r.units;
    p.cost += Number(r.cost);
    p.bytes_out += r.bytes_out;
  }
  return [...periods.values()].sort((a, b) => a.period_start.localeCompare(b.period_start));
}

// Every period of [from, to), those without requests as zeros: the chart's
// x axis is the whole range asked for.
function fillPeriods(periods, from, to, granularity) {
  const step = granularity === 'hour' ? 3600e3 : 86400e3;
  const start = Date.parse(from);
  const end = Date.parse(to);
  if (isNaN(start) || isNaN(end) || (end - start) / step > 1000) return periods;
  const have = new Map(periods.map((p) => [p.period_start, p]));
  const all = [];
  for (let t = start; t < end; t += step) {
    const iso = new Date(t).toISOString().replace('.000Z', 'Z');
    all.push(have.get(iso) || {period_start: iso, requests: 0, ok: 0, client: 0, server: 0,
                               rejected: 0, units: 0, cost: 0, bytes_out: 0});
  }
  return all;
}

function periodLabel(iso, granularity) {
  return granularity === 'hour' ? iso.slice(5, 16).replace('T', ' ') : iso.slice(0, 10);
}

function chartCard(title, id) {
  return h('div', {class: 'chart-card'}, h('h3', {}, title),
           h('div', {class: 'chart-box'}, h('canvas', {id, role: 'img', 'aria-label': title})));
}

function query(sel, extra) {
  const p = new URLSearchParams(extra || {});
  if (sel.key) p.set('key', sel.key);
  else if (sel.identity) p.set('identity', sel.identity);
  return p;
}

function monthStart() {
  const d = new Date();
  return d.getUTCFullYear() + '-' + String(d.getUTCMonth() + 1).padStart(2, '0') + '-01';
}

export function render(main, params) {
  const charts = [];
  const keySel = h('select', {id: 'usage-key'}, h('option', {value: ''}, 'all keys and clients'));
  const identity = h('input', {id: 'usage-identity', placeholder: 'ip:198.51.100.7 or sub:alice'});
  const gran = h('select', {id: 'usage-granularity'}, h('option', {value: 'hour'}, 'by hour (24 h)'),
                 h('option', {value: 'day'}, 'by day (30 d)'));
  const csvBtn = h('button', {type: 'button', class: 'ghost', id: 'usage-csv'}, 'Download CSV');
  const form = h('form', {class: 'toolbar', id: 'usage-form'}, field('Key', keySel),
                 field('or identity', identity), field('Granularity', gran),
                 h('button', {type: 'submit', class: 'primary'}, 'Show'), csvBtn);
  const report = h('div', {id: 'usage-report'});
  const burn = h('div', {id: 'usage-burn'});
  main.append(h('h1', {}, 'Usage'), form, report, burn);

  function selection() {
    return {key: keySel.value, identity: identity.value.trim(), granularity: gran.value};
  }

  function dropCharts() {
    while (charts.length) charts.pop().destroy();
  }

  async function loadReport(sel) {
    replace(report, section('Requests', loading('usage')));
    let res;
    try {
      res = await api('GET', '/usage?' + query(sel, {granularity: sel.granularity}));
    } catch (e) {
      replace(report, section('Requests', errorState(e, () => loadReport(sel))));
      return;
    }
    const periods = sumByPeriod(res.rows || []);
    const t = res.totals || {};
    const totals = h('div', {class: 'stats'},
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'Requests'),
        h('div', {class: 'stat-value', id: 'usage-total-requests'}, fmtNum(t.requests || 0))),
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'Units'),
        h('div', {class: 'stat-value'}, fmtNum(t.units || 0))),
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'Rejected'),
        h('div', {class: 'stat-value'}, fmtNum(t.rejections ? t.rejections.limit +
          t.rejections.quota + t.rejections.ban : 0))),
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'Cost'),
        h('div', {class: 'stat-value'}, fmtNum(Number(t.cost || 0), 4))),
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'p99 latency'),
        h('div', {class: 'stat-value'}, t.latency_ms && t.latency_ms.p99 !== null
          ? fmtNum(t.latency_ms.p99, 1) + ' ms' : '—')));
    const range = h('p', {class: 'muted small'}, fmtTime(res.from), ' to ', fmtTime(res.to), ' (UTC)');
    if (!periods.length) {
      replace(report, section('Requests', totals, range,
                              empty('No requests in this period for this selection.')));
      return;
    }
    const body = [totals, range];
    if (chartAvailable()) body.push(chartCard('Requests per ' + sel.granularity, 'usage-chart'));
    body.push(table([
      {label: 'Period', cell: (p) => periodLabel(p.period_start, sel.granularity)},
      {label: 'Requests', class: 'num', cell: (p) => fmtNum(p.requests)},
      {label: '2xx/3xx', class: 'num', cell: (p) => fmtNum(p.ok)},
      {label: '4xx', class: 'num', cell: (p) => fmtNum(p.client)},
      {label: '5xx', class: 'num', cell: (p) => fmtNum(p.server)},
      {label: 'Rejected', class: 'num', cell: (p) => fmtNum(p.rejected)},
      {label: 'Units', class: 'num', cell: (p) => fmtNum(p.units)},
    ], periods.slice().reverse(), {id: 'usage-table'}));
    replace(report, section('Requests', ...body));
    if (chartAvailable()) {
      const all = fillPeriods(periods, res.from, res.to, sel.granularity);
      const labels = all.map((p) => periodLabel(p.period_start, sel.granularity));
      charts.push(lineChart(document.getElementById('usage-chart'), labels, [
        {label: '2xx/3xx', color: COLORS.green, data: all.map((p) => p.ok), stack: 's'},
        {label: '4xx', color: COLORS.amber, data: all.map((p) => p.client), stack: 's'},
        {label: '5xx', color: COLORS.red, data: all.map((p) => p.server), stack: 's'},
      ], {type: 'bar', stacked: true}));
    }
  }

  // The month so far against the key's monthly quota (units, as quotas count).
  async function loadBurn(sel) {
    if (!sel.key) {
      loadTop();
      return;
    }
    replace(burn, section('Quota burn-down (this month)', loading('quota')));
    try {
      const [key, res] = await Promise.all([
        api('GET', '/keys/' + encodeURIComponent(sel.key)),
        api('GET', '/usage?' + query(sel, {granularity: 'day', from: monthStart()})),
      ]);
      const days = sumByPeriod(res.rows || []);
      const quota = key.quota ? key.quota.monthly : null;
      let used = 0;
      const cumulative = days.map((d) => (used += d.units));
      const facts = h('dl', {class: 'facts'},
        h('dt', {}, 'Used this month'), h('dd', {id: 'burn-used'}, fmtNum(used) + ' units'),
        h('dt', {}, 'Monthly quota'),
        h('dd', {}, quota === null || quota === undefined
          ? 'the tier\'s (' + key.tier + '); set one on the key to see what is left' : fmtNum(quota)),
        quota ? h('dt', {}, 'Left') : null,
        quota ? h('dd', {class: used >= quota ? 'bad-text' : 'ok-text'},
                  fmtNum(Math.max(0, quota - used)) + ' (' + fmtNum(100 * used / quota, 1) + ' % used)')
              : null);
      if (!days.length) {
        replace(burn, section('Quota burn-down (this month)', facts, empty('Nothing used this month.')));
        return;
      }
      replace(burn, section('Quota burn-down (this month)', facts,
                            chartAvailable() ? chartCard('Units used, cumulative', 'burn-chart') : null));
      if (chartAvailable()) {
        const labels = days.map((d) => d.period_start.slice(0, 10));
        const sets = [{label: 'remaining', color: COLORS.blue,
                       data: quota ? cumulative.map((c) => Math.max(0, quota - c)) : cumulative}];
        if (!quota) sets[0].label = 'used (cumulative)';
        charts.push(lineChart(document.getElementById('burn-chart'), labels, sets, {points: true}));
      }
    } catch (e) {
      replace(burn, section('Quota burn-down (this month)', errorState(e, () => loadBurn(sel))));
    }
  }

  async function loadTop() {
    replace(burn, section('Top identities today', loading('top identities')));
    try {
      const res = await api('GET', '/usage/top?by=requests&period=day&n=10');
      const rows = res.rows || [];
      replace(burn, section('Top identities today',
        rows.length ? table([
          {label: '#', cell: (r) => r.rank},
          {label: 'Identity', cell: (r) => h('code', {}, r.identity)},
          {label: 'Requests', class: 'num', cell: (r) => fmtNum(r.requests)},
          {label: 'Rejected', class: 'num', cell: (r) => fmtNum(r.rejections.limit +
            r.rejections.quota + r.rejections.ban)},
          {label: 'Cost', class: 'num', cell: (r) => fmtNum(Number(r.cost), 4)},
        ], rows, {id: 'usage-top'}) : empty('No requests today.')));
    } catch (e) {
      replace(burn, section('Top identities today',
        isMissing(e) ? unavailable('Top identities') : errorState(e, loadTop)));
    }
  }

  function show() {
    dropCharts();
    const sel = selection();
    const p = query(sel, {granularity: sel.granularity});
    history.replaceState(null, '', '#/usage?' + p);
    loadReport(sel);
    loadBurn(sel);
  }

  async function downloadCsv() {
    const sel = selection();
    try {
      const text = await apiText('/usage?' + query(sel, {granularity: sel.granularity,
                                                         format: 'csv'}));
      const url = URL.createObjectURL(new Blob([text], {type: 'text/csv'}));
      const a = h('a', {href: url, download: 'usage-' + (sel.key || sel.identity || 'all') + '-' +
                                             sel.granularity + '.csv'});
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      replace(report, section('Requests', errorState(e)));
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    show();
  });
  keySel.addEventListener('change', () => {
    if (keySel.value) identity.value = '';
    show();
  });
  identity.addEventListener('input', () => {
    if (identity.value.trim()) keySel.value = '';
  });
  gran.addEventListener('change', show);
  csvBtn.addEventListener('click', downloadCsv);

  async function init() {
    gran.value = params.get('granularity') === 'day' ? 'day' : 'hour';
    identity.value = params.get('identity') || '';
    try {
      const res = await api('GET', '/keys');
      for (const k of res.keys || []) {
        keySel.append(h('option', {value: k.id}, (k.name || '(no name)') + ' · ' + k.id +
                                                    (k.state === 'revoked' ? ' (revoked)' : '')));
      }
    } catch (e) {
      // the report below still works with an identity
    }
    const want = params.get('key');
    if (want) {
      if (![...keySel.options].some((o) => o.value === want)) keySel.append(h('option', {value: want}, want));
      keySel.value = want;
    }
    show();
  }
  init();
  return dropCharts;
}
