// The dashboard's shell: sign-in, the hash router (#/keys, #/usage?key=...),
// the nav and the live-stream indicator. Each page is a module with
// render(main, params) that may return a function to call when leaving it.
import {api, clearToken, getToken, setToken, setUnauthorizedHandler} from './api.js';
import {replace} from './dom.js';
import * as stream from './stream.js';
import * as overview from './pages/overview.js';
import * as keys from './pages/keys.js';
import * as usage from './pages/usage.js';
import * as bans from './pages/bans.js';
import * as access from './pages/access.js';
import * as cache from './pages/cache.js';
import * as events from './pages/events.js';

const PAGES = {overview, keys, usage, bans, access, cache, events};
let leave = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, query] = hash.split('?');
  return {name: PAGES[name] ? name : 'overview', params: new URLSearchParams(query || '')};
}

function showPage() {
  if (!getToken()) return;
  const {name, params} = route();
  if (leave) {
    leave();
    leave = null;
  }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const main = document.getElementById('main');
  replace(main);
  document.title = 'sluice admin · ' + name;
  const r = PAGES[name].render(main, params);
  leave = typeof r === 'function' ? r : null;
}

function showSignin(message) {
  document.getElementById('shell').hidden = true;
  document.getElementById('signin').hidden = false;
  const err = document.getElementById('signin-error');
  err.hidden = !message;
  err.textContent = message || '';
  document.getElementById('signin-token').focus();
}

async function showShell() {
  document.getElementById('signin').hidden = true;
  document.getElementById('shell').hidden = false;
  stream.start();
  showPage();
  try {
    const health = await api('GET', '/health');
    document.getElementById('gw-version').textContent = 'v' + health.version;
  } catch (e) {
    // the overview shows the error; the header stays without a version
  }
}

function signOut(message) {
  if (leave) {
    leave();
    leave = null;
  }
  stream.stop();
  clearToken();
  replace(document.getElementById('main'));
  showSignin(message);
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById('signin-token');
  const token = input.value.trim();
  if (!token) return;
  setToken(token);
  try {
    await api('GET', '/health');
  } catch (e) {
    clearToken();
    showSignin(e.status === 401 ? 'That token was refused by the gateway.' : e.message);
    return;
  }
  input.value = '';
  showShell();
}

function streamIndicator(state) {
  const pill = document.getElementById('stream-state');
  const text = {live: 'live', connecting: 'connecting…', error: 'reconnecting…',
                offline: 'offline'}[state];
  pill.textContent = text;
  pill.className = 'pill pill-' + state;
}

function main() {
  setUnauthorizedHandler(() => signOut('The gateway refused the token (401): sign in again.'));
  document.getElementById('signin-form').addEventListener('submit', signIn);
  document.getElementById('signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', showPage);
  stream.onState(streamIndicator);
  if (getToken()) showShell();
  else showSignin();
}

main();
