// The admin dashboard in a real browser: Debian's chromium driven by
// playwright-core. Run by tests/e2e/test_dashboard.py, which starts a
// gateway and an upstream and passes, in the environment:
//   SLUICE_ADMIN_URL    http://127.0.0.1:PORT (the admin listener)
//   SLUICE_GATEWAY_URL  http://127.0.0.1:PORT (the public listener)
//   SLUICE_ADMIN_TOKEN  the admin token
//   SCREENSHOT_DIR      where to save a PNG of each page (git-ignored)
//   CHROMIUM            the browser (default /usr/bin/chromium)
// Each scenario prints one line `RESULT {"name", "status": pass|fail,
// "detail"}`; the exit code is 1 when any failed.
import {mkdirSync, readFileSync} from 'node:fs';
import {chromium} from 'playwright-core';

const ADMIN = process.env.SLUICE_ADMIN_URL;
const GATEWAY = process.env.SLUICE_GATEWAY_URL;
const TOKEN = process.env.SLUICE_ADMIN_TOKEN;
const SHOTS = process.env.SCREENSHOT_DIR || 'build/screenshots';
const XSS_NAME = '<img src=x onerror=alert(1)>';


function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Polls fn() until it returns a truthy value (returned) or <ms> pass.
async function eventually(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > end) throw new Error('timed out waiting for ' + what + ' (last: ' + last + ')');
    await sleep(200);
  }
}

async function adminCall(method, path, body) {
  const res = await fetch(ADMIN + path, {
    method, headers: {Authorization: 'Bearer ' + TOKEN, 'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // not JSON
  }
  return {status: res.status, json, text};
}

async function client(path, secret) {
  const headers = secret ? {'X-API-Key': secret} : {};
  const res = await fetch(GATEWAY + path, {headers});
  await res.arrayBuffer();
  return res;
}

// Does this gateway send the per-second stats tick on /events?
async function hasStatsTick() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 2500);
  try {
    const res = await fetch(ADMIN + '/events', {headers: {Authorization: 'Bearer ' + TOKEN},
                                                signal: ctl.signal});
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let text = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return false;
      text += dec.decode(value, {stream: true});
      if (/^event: stats$/m.test(text)) return true;
    }
  } catch (e) {
    return false;
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }
}

// ---- the browser ------------------------------------------------------------------

const consoleErrors = [];
const dialogs = [];
// Network errors the tests cause on purpose, which the browser logs on the
// console: a wrong token (401 /health) and, on a gateway without bans,
// their endpoints' 404. Anything else on the console fails no_console_errors.
const expectedFailures = [];

function watch(page) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const url = (msg.location() && msg.location().url) || '';
    const text = msg.text();
    if (/Failed to load resource/.test(text) &&
        expectedFailures.some((f) => url.includes(f.path) && text.includes(String(f.status)))) {
      return;
    }
    consoleErrors.push(text + (url ? ' (' + url + ')' : ''));
  });
  page.on('pageerror', (err) => consoleErrors.push('page error: ' + err.message));
  page.on('dialog', async (d) => {
    dialogs.push(d.type() + ': ' + d.message());
    await d.dismiss();
  });
}

// A fresh load of the page at <hash> each time (the query only defeats a
// same-document navigation, which would keep the last page's DOM).
let loads = 0;
async function goto(page, hash) {
  await page.goto(ADMIN + '/?load=' + ++loads + hash);
  await page.waitForSelector('#shell:not([hidden])');
}

async function shot(page, name) {
  await page.screenshot({path: SHOTS + '/' + name + '.png', fullPage: false});
}

// ---- scenarios --------------------------------------------------------------------

const state = {};

const scenarios = [
  ['sign_in', async ({page}) => {
    await page.goto(ADMIN + '/');
    await page.waitForSelector('#signin:not([hidden])');
    await shot(page, 'signin');
    expectedFailures.push({path: '/health', status: 401});
    await page.fill('#signin-token', 'not-the-token');
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#signin-error:not([hidden])');
    const msg = await page.textContent('#signin-error');
    assert(/refused/.test(msg), 'wrong token: ' + msg);
    await page.fill('#signin-token', TOKEN);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#shell:not([hidden])');
    await page.waitForSelector('#stream-state.pill-live', {timeout: 5000});
    const stored = await page.evaluate(() => [sessionStorage.getItem('sluice.admin.token'),
                                              document.cookie, localStorage.length]);
    assert(stored[0] === TOKEN, 'token not in sessionStorage');
    assert(stored[1] === '' && stored[2] === 0, 'cookie or localStorage used: ' + stored);
  }],

  ['overview', async ({page}) => {
    await goto(page, '#/overview');
    await page.waitForSelector('dl.facts dd.ok-text');
    assert((await page.textContent('dl.facts')).includes('ok'), 'health not shown');
  }],

  ['overview_live_stats', async ({page}) => {
    if (!state.stats) throw new Error('GET /events sent no "stats" event');
    await goto(page, '#/overview');
    for (let i = 0; i < 20; i++) await client('/origin/stats-' + (i % 3));
    await page.waitForSelector('#chart-rps', {timeout: 5000});
    await eventually(async () => (await page.textContent('#stat-rps')) !== '—', 5000, 'requests/s');
    const redis = await page.textContent('#stat-redis');
    assert(['off', 'up', 'down'].includes(redis), 'redis state: ' + redis);
    const points = await page.evaluate(() => {
      const c = window.Chart.getChart(document.getElementById('chart-rps'));
      return c ? c.data.labels.length : 0;
    });
    assert(points >= 1, 'no point on the requests/s chart');
    // The requests sent above show on the charts within a tick or two.
    await eventually(async () => {
      for (let i = 0; i < 5; i++) await client('/origin/stats-more');
      return page.evaluate(() => {
        const c = window.Chart.getChart(document.getElementById('chart-rps'));
        return Math.max(0, ...c.data.datasets[0].data.filter((v) => v !== null)) > 0;
      });
    }, 6000, 'requests/s above 0 on the chart');
    await sleep(2500);
    await shot(page, 'overview');
  }],

  // The overview's charts against the stats tick's documented shape, with
  // GET /events answered by the browser itself (page.route): runs on any
  // gateway, so the charts are tested before the tick is merged.
  ['overview_charts_simulated_ticks', async ({page}) => {
    const now = Date.now();
    let text = ': connected\n\n';
    for (let i = 0; i < 90; i++) {
      const wave = Math.sin(i / 9);
      const tick = {type: 'stats', ts: now - (90 - i) * 1000, rps: Math.round(420 + 120 * wave),
                    rates: {'2xx': Math.round(380 + 110 * wave), '4xx': 25 + (i % 7),
                            '5xx': i % 30 === 0 ? 9 : 1, '429': 14 + (i % 5)},
                    cache: {hits: 300 + i, misses: 100, hit_ratio: 0.72 + 0.1 * wave},
                    latency_ms: {p50: 3.1 + wave, p95: 18 + 4 * wave, p99: 41 + 9 * wave},
                    redis: 'up', fleet: 3, connections: 212 + i};
      text += 'event: stats\ndata: ' + JSON.stringify(tick) + '\n\n';
    }
    const events = (url) => new URL(url).pathname === '/events';
    await page.route(events, (route) => route.fulfill({
      status: 200, headers: {'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store'},
      body: text}));
    try {
      await goto(page, '#/overview');
      await page.waitForSelector('#chart-rps');
      await eventually(async () => (await page.textContent('#stat-redis')) === 'up', 5000,
                       'Redis state');
      assert((await page.textContent('#stat-fleet')) === '3 gateways', 'fleet size');
      const n = await page.evaluate(() => ['chart-rps', 'chart-rates', 'chart-hits', 'chart-latency']
        .map((id) => window.Chart.getChart(document.getElementById(id)).data.datasets
          .reduce((a, d) => a + d.data.length, 0)));
      assert(n[0] >= 90 && n[1] >= 360 && n[2] >= 90 && n[3] >= 270, 'points: ' + n);
      assert((await page.textContent('#stat-hit')).endsWith('%'), 'hit ratio');
      await page.waitForSelector('dl.facts dd.ok-text');
      await page.locator('#main').screenshot({path: SHOTS + '/overview-simulated.png'});
    } finally {
      await page.unroute(events);
    }
  }],

  // The bans page against the documented shapes of /violations and /bans,
  // answered by the browser itself (page.route), so its ban and unban flows
  // are tested before the bans merge; bans_ban_and_unban below is the real one.
  ['bans_page_simulated_api', async ({page}) => {
    const now = Math.floor(Date.now() / 1000);
    const bans = [{identity: 'ip:2001:db8::7', reason: 'auto: 50 violations in 10 min',
                   source: 'auto', created: now - 600, until: now + 3000, retry_after: 3000,
                   count: 2}];
    const violators = [
      {identity: 'ip:198.51.100.7', violations: 120, last: now - 30, banned: false},
      {identity: 'ip:2001:db8::7', violations: 50, last: now - 600, banned: true},
      {identity: 'key:key_0badc0ffee', violations: 12, last: now - 3600, banned: false}];
    const calls = [];
    const mine = (url) => {
      const p = new URL(url).pathname;
      return p === '/bans' || p.startsWith('/bans/') || p === '/violations';
    };
    await page.route(mine, async (route) => {
      const req = route.request();
      const url = new URL(req.url());
      calls.push(req.method() + ' ' + url.pathname + url.search);
      const json = (status, body) => route.fulfill({status, contentType: 'application/json',
                                                    body: JSON.stringify(body)});
      if (url.pathname === '/violations') return json(200, {window: '24h', violators});
      if (req.method() === 'GET') return json(200, {bans});
      if (req.method() === 'POST') {
        const b = JSON.parse(req.postData());
        const ban = {identity: b.identity, reason: b.reason, source: 'manual', created: now,
                     until: now + 3600, retry_after: 3600, count: 1};
        bans.push(ban);
        violators.forEach((v) => { if (v.identity === b.identity) v.banned = true; });
        return json(201, ban);
      }
      const who = decodeURIComponent(url.pathname.slice('/bans/'.length));
      const i = bans.findIndex((b) => b.identity === who);
      if (i < 0) return json(404, {error: 'Not Found', message: 'no such ban'});
      bans.splice(i, 1);
      return route.fulfill({status: 204});
    });
    try {
      await goto(page, '#/bans');
      await page.waitForSelector('#violators-table');
      await page.waitForSelector('#bans-table');
      const row = page.locator('#violators-table tbody tr', {hasText: 'ip:198.51.100.7'});
      await row.locator('button').click();
      assert((await page.inputValue('#ban-form input[name=identity]')) === 'ip:198.51.100.7',
             'Ban… did not fill the form');
      await page.fill('#ban-form input[name=duration]', '1h');
      await page.click('#ban-form button[type=submit]');
      await page.locator('#bans-table tbody tr', {hasText: 'ip:198.51.100.7'}).waitFor();
      const post = calls.find((c) => c.startsWith('POST /bans'));
      assert(post, 'no POST /bans: ' + calls);
      await shot(page, 'bans-simulated');
      const v6 = page.locator('#bans-table tbody tr', {hasText: 'ip:2001:db8::7'});
      await v6.locator('[data-action=unban]').click();
      await page.locator('#bans-list .confirm button.danger').click();
      await eventually(async () => (await v6.count()) === 0, 5000, 'the unbanned row to go');
      assert(calls.includes('DELETE /bans/ip%3A2001%3Adb8%3A%3A7'), 'DELETE path: ' + calls);
      assert(calls.some((c) => c === 'GET /violations?top=20&window=24h'), 'violations: ' + calls);
    } finally {
      await page.unroute(mine);
    }
  }],

  ['create_key_secret_once', async ({page}) => {
    await goto(page, '#/keys');
    await page.waitForSelector('#keys-list .state-empty, #keys-table');
    await page.click('#new-key');
    await page.fill('#create-key-form input[name=tier]', 'pro');
    await page.fill('#create-key-form input[name=name]', 'browser test');
    await page.fill('#create-key-form input[name=owner]', 'qa');
    await page.click('#create-key-form button[type=submit]');
    await page.waitForSelector('#new-secret');
    const secret = (await page.textContent('#new-secret')).trim();
    assert(/^sk_/.test(secret), 'secret: ' + secret);
    await shot(page, 'keys-created');
    const id = (await page.textContent('.secret-panel strong')).trim();
    assert(/^key_/.test(id), 'key id: ' + id);
    state.secret = secret;
    state.keyId = id;
    await page.click('#copy-secret');
    await page.click('#secret-done');
    assert(!(await page.content()).includes(secret), 'the secret is still in the page after Done');
    await page.reload();
    await page.waitForSelector('#keys-table');
    assert(!(await page.content()).includes(secret), 'the secret is shown again after a reload');
    assert((await page.textContent('#keys-table')).includes(id), 'new key not listed');
  }],

  ['use_key_from_client', async () => {
    assert(state.secret, 'no key from create_key_secret_once');
    assert((await client('/echo')).status === 401, 'no key: not 401');
    for (let i = 0; i < 5; i++) {
      const r = await client('/echo', state.secret);
      assert(r.status === 200, 'with the new key: ' + r.status);
    }
  }],

  ['usage_shows_requests', async ({page}) => {
    assert(state.keyId, 'no key');
    await goto(page, '#/usage?key=' + state.keyId + '&granularity=hour');
    await eventually(async () => {
      await page.click('#usage-form button[type=submit]');
      await page.waitForSelector('#usage-total-requests');
      return (await page.textContent('#usage-total-requests')).trim() === '5';
    }, 10000, 'the 5 requests in the usage report');
    await page.waitForSelector('#usage-table');
    await page.waitForSelector('#usage-chart');
    await page.waitForSelector('#burn-used');
    assert((await page.textContent('#burn-used')).startsWith('5'), 'burn-down used');
    const download = page.waitForEvent('download');
    await page.click('#usage-csv');
    const file = await (await download).path();
    const csv = readFileSync(file, 'utf8');
    assert(csv.startsWith('period_start,identity,key_id'), 'CSV header: ' + csv.slice(0, 60));
    assert(csv.includes(state.keyId), 'CSV without the key');
    await shot(page, 'usage');
  }],

  ['update_key_tier_and_quota', async ({page}) => {
    await goto(page, '#/keys');
    await page.waitForSelector('#keys-table');
    await page.fill('#key-search', state.keyId);
    const row = page.locator('#keys-table tbody tr', {hasText: state.keyId});
    await row.locator('[data-action=edit]').click();
    const form = page.locator('#keys-table .extra-row form');
    await form.locator('input[name=tier]').fill('free');
    await form.locator('input[name=quota_monthly]').fill('1000');
    await shot(page, 'keys-edit');
    await form.locator('button[type=submit]').click();
    await eventually(async () => (await page.textContent('#keys-table')).includes('1,000/month'),
                     5000, 'the new quota in the table');
    const k = await adminCall('GET', '/keys/' + state.keyId);
    assert(k.json.tier === 'free' && k.json.quota.monthly === 1000, 'PATCH not applied: ' + k.text);
  }],

  ['rotate_key_with_grace', async ({page}) => {
    await goto(page, '#/keys');
    await page.waitForSelector('#keys-table');
    const row = page.locator('#keys-table tbody tr', {hasText: state.keyId});
    await row.locator('[data-action=rotate]').click();
    const form = page.locator('#keys-table .extra-row form');
    await form.locator('input[name=grace]').fill('1h');
    await shot(page, 'keys-rotate');
    await form.locator('button[type=submit]').click();
    await page.waitForSelector('#new-secret');
    const fresh = (await page.textContent('#new-secret')).trim();
    assert(/^sk_/.test(fresh) && fresh !== state.secret, 'rotated secret: ' + fresh);
    await page.click('#secret-done');
    assert((await client('/echo', fresh)).status === 200, 'new secret refused');
    assert((await client('/echo', state.secret)).status === 200, 'old secret refused in grace');
    state.oldSecret = state.secret;
    state.secret = fresh;
  }],

  ['revoke_key', async ({page}) => {
    await goto(page, '#/keys');
    await page.waitForSelector('#keys-table');
    const row = page.locator('#keys-table tbody tr', {hasText: state.keyId});
    await row.locator('[data-action=revoke]').click();
    await page.locator('#keys-table .extra-row .confirm button.danger').click();
    await eventually(async () => (await page.locator('#keys-table tbody tr',
                                                     {hasText: state.keyId}).count()) === 0,
                     5000, 'the revoked key to leave the list');
    await page.check('#show-revoked');
    assert((await page.textContent('#keys-table')).includes(state.keyId), 'revoked key not shown');
    await eventually(async () => (await client('/echo', state.secret)).status === 401, 3000,
                     '401 for the revoked key');
    assert((await client('/echo', state.oldSecret)).status === 401, 'old secret after revoke');
  }],

  ['key_name_is_text_not_html', async ({page}) => {
    // The events page lists what arrives while it is open: open it first.
    await goto(page, '#/events');
    await page.waitForSelector('#stream-state.pill-live');
    const r = await adminCall('POST', '/keys', {tier: 'pro', name: XSS_NAME, owner: XSS_NAME});
    assert(r.status === 201, 'create: ' + r.text);
    await page.waitForSelector('.event');
    assert((await page.textContent('#events-list')).includes(XSS_NAME), 'event not shown as text');
    assert((await page.locator('#events-list img').count()) === 0, 'an <img> in the events list');
    await shot(page, 'events');
    await goto(page, '#/keys');
    await page.waitForSelector('#keys-table');
    const cell = page.locator('#keys-table .key-name', {hasText: XSS_NAME});
    await cell.first().waitFor();
    assert(await cell.first().isVisible(), 'the name is not visible as text');
    assert((await page.locator('#keys-table img').count()) === 0, 'an <img> was made from data');
    await goto(page, '#/usage');
    await page.waitForSelector('#usage-key option:nth-child(2)', {state: 'attached'});
    await sleep(300);
    assert(dialogs.length === 0, 'a dialog opened: ' + dialogs.join('; '));
  }],

  ['access_list_add_delete', async ({page}) => {
    await goto(page, '#/access');
    await page.waitForSelector('#access-list .state-empty, #access-table');
    await page.selectOption('#access-form select[name=list]', 'deny');
    await page.fill('#access-form input[name=cidr]', '203.0.113.0/24');
    await page.fill('#access-form input[name=ttl]', '1h');
    await page.fill('#access-form input[name=note]', '<b>scraper</b>');
    await page.click('#access-form button[type=submit]');
    const row = page.locator('#access-table tbody tr', {hasText: '203.0.113.0/24'});
    await row.waitFor();
    assert((await row.textContent()).includes('<b>scraper</b>'), 'note not shown as text');
    await shot(page, 'access');
    await row.locator('[data-action=delete]').click();
    await page.locator('#access-list .confirm button.danger').click();
    await eventually(async () => (await page.locator('#access-table').count()) === 0 ||
                     !(await page.textContent('#access-list')).includes('203.0.113.0/24'),
                     5000, 'the entry to go');
  }],

  ['cache_purge', async ({page}) => {
    await client('/origin/purge-me');
    const hit = await client('/origin/purge-me');
    assert(hit.headers.get('x-cache') === 'HIT', 'not cached: ' + hit.headers.get('x-cache'));
    await goto(page, '#/cache');
    await page.selectOption('#purge-kind', 'prefix');
    await page.fill('#purge-value', '/origin/');
    await page.click('#purge-form button[type=submit]');
    await page.waitForSelector('#purged-count');
    const n = Number((await page.textContent('#purged-count')).replace(/,/g, ''));
    assert(n >= 1, 'purged ' + n);
    await shot(page, 'cache');
    const after = await client('/origin/purge-me');
    assert(after.headers.get('x-cache') !== 'HIT', 'still a HIT after the purge');
  }],

  ['bans_ban_and_unban', async ({page}) => {
    const probe = await adminCall('GET', '/bans');
    assert(probe.status === 200, 'GET /bans: ' + probe.status);
    const who = 'ip:127.0.0.1';
    assert((await client('/origin/ban-check')).status === 200, 'before the ban');
    await goto(page, '#/bans');
    await page.waitForSelector('#violators table, #violators .state-empty');
    await page.fill('#ban-form input[name=identity]', who);
    await page.fill('#ban-form input[name=duration]', '1h');
    await page.fill('#ban-form input[name=reason]', 'browser test');
    await page.click('#ban-form button[type=submit]');
    const row = page.locator('#bans-table tbody tr', {hasText: who});
    await row.waitFor({timeout: 5000});
    await eventually(async () => (await client('/origin/ban-check2')).status === 403, 3000,
                     '403 for the banned client');
    await shot(page, 'bans');
    await row.locator('[data-action=unban]').click();
    await page.locator('#bans-list .confirm button.danger').click();
    await eventually(async () => (await page.locator('#bans-table tbody tr', {hasText: who})
      .count()) === 0, 5000, 'the ban to leave the list');
    await eventually(async () => (await client('/origin/ban-check3')).status !== 403, 3000,
                     'the client let in again');
  }],

  // A failing call shows the error state with its message, and Retry loads
  // the list once the API answers again (GET /keys answered 500 by the
  // browser itself the first time).
  ['error_state_and_retry', async ({page}) => {
    let failures = 1;
    const keys = (url) => new URL(url).pathname === '/keys';
    const expected = {path: '/keys', status: 500};
    expectedFailures.push(expected);
    await page.route(keys, (route) => {
      if (failures-- > 0) {
        return route.fulfill({status: 500, contentType: 'application/json',
                              body: JSON.stringify({error: 'Internal Server Error',
                                                    message: 'store unavailable'})});
      }
      return route.continue();
    });
    try {
      await goto(page, '#/keys');
      await page.waitForSelector('#keys-list .state-error');
      assert((await page.textContent('#keys-list')).includes('store unavailable'),
             'error message not shown');
      await shot(page, 'keys-error');
      await page.click('#keys-list .state-error button');
      await page.waitForSelector('#keys-table, #keys-list .state-empty');
    } finally {
      await page.unroute(keys);
      await sleep(200);
      expectedFailures.splice(expectedFailures.indexOf(expected), 1);
    }
  }],

  ['phone_width', async ({browser}) => {
    const ctx = await browser.newContext({viewport: {width: 375, height: 812}, deviceScaleFactor: 1});
    const page = await ctx.newPage();
    watch(page);
    await page.goto(ADMIN + '/');
    await page.fill('#signin-token', TOKEN);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#shell:not([hidden])');
    for (const name of ['keys', 'overview', 'usage']) {
      await page.goto(ADMIN + '/#/' + name);
      await page.waitForSelector('#main h1');
      await sleep(700);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth -
                                                 document.documentElement.clientWidth);
      assert(overflow <= 0, name + ': the page is ' + overflow + ' px wider than the phone');
      await page.screenshot({path: SHOTS + '/phone-' + name + '.png'});
    }
    await page.goto(ADMIN + '/#/keys');
    await page.waitForSelector('#keys-table, #keys-list .state-empty');
    await page.click('#new-key');
    await page.waitForSelector('#create-key-form');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth -
                                               document.documentElement.clientWidth);
    assert(overflow <= 0, 'new key form: ' + overflow + ' px wider than the phone');
    await page.screenshot({path: SHOTS + '/phone-keys-new.png'});
    const row = page.locator('#keys-table tbody tr').first();
    if (await row.count()) {
      await page.click('#create-key-form button.ghost');
      await row.locator('[data-action=edit]').click();
      await page.waitForSelector('#keys-table .extra-row form');
      await page.screenshot({path: SHOTS + '/phone-keys-edit.png', fullPage: true});
    }
    await ctx.close();
  }],

  ['screenshots_of_every_page', async ({page}) => {
    // A few keys with traffic, so the pages show something.
    const made = [];
    for (const body of [{tier: 'pro', name: 'acme ci', owner: 'acme', quota_monthly: 2000},
                        {tier: 'free', name: 'mobile app', owner: 'team-mobile',
                         scopes: ['orders:read']}]) {
      const r = await adminCall('POST', '/keys', body);
      assert(r.status === 201, 'create: ' + r.text);
      made.push(r.json);
    }
    for (let i = 0; i < 40; i++) {
      await client(i % 9 === 8 ? '/status/404' : '/echo', made[i % 2].secret);
    }
    await adminCall('POST', '/access', {list: 'deny', cidr: '198.51.100.0/24', ttl: '1h',
                                        note: 'scraper'});
    await sleep(1200);
    const pages = ['overview', 'keys', 'usage?key=' + made[0].key.id, 'bans', 'access', 'cache',
                   'events'];
    for (const hash of pages) {
      const name = hash.split('?')[0];
      await goto(page, '#/' + hash);
      await page.waitForSelector('#main h1');
      await page.waitForFunction(() => !document.querySelector('#main .state-loading'),
                                 null, {timeout: 8000});
      await sleep(name === 'overview' ? 1500 : 300);
      await shot(page, 'page-' + name);
    }
  }],

  ['sign_out', async ({page}) => {
    await goto(page, '#/keys');
    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    const token = await page.evaluate(() => sessionStorage.getItem('sluice.admin.token'));
    assert(token === null, 'token kept after sign-out');
  }],

  ['no_console_errors', async () => {
    assert(consoleErrors.length === 0, consoleErrors.length + ' console errors: ' +
                                       consoleErrors.join(' | '));
  }],
];

async function main() {
  mkdirSync(SHOTS, {recursive: true});
  state.stats = await hasStatsTick();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({viewport: {width: 1280, height: 800},
                                            acceptDownloads: true});
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], {origin: ADMIN});
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  watch(page);
  const only = process.argv.slice(2);
  let failed = 0;
  for (const [name, fn] of scenarios) {
    if (only.length && !only.includes(name) && name !== 'no_console_errors') continue;
    const t0 = Date.now();
    let status = 'pass';
    let detail = '';
    try {
      await fn({page, browser, context});
    } catch (e) {
      status = 'fail';
      detail = e.stack || String(e);
      failed++;
      try {
        await shot(page, 'FAILED-' + name);
      } catch (e2) {
        // the page itself may be gone
      }
    }
    console.log('RESULT ' + JSON.stringify({name, status, detail, ms: Date.now() - t0}));
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log('RESULT ' + JSON.stringify({name: 'harness', status: 'fail', detail: e.stack}));
  process.exit(1);
});
