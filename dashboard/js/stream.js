// The one GET /events stream of this tab, shared by every page: it
// reconnects with a growing delay, keeps the last events for the events
// page, and hands each event to the pages that listen.
import {openEvents} from './api.js';

const KEEP = 200;
const recent = [];        // newest last; stats ticks are not kept
const listeners = new Set();
const stateListeners = new Set();
let controller = null;
let state = 'offline';    // offline | connecting | live | error
let lastStats = null;
let statsSeen = false;
let connectedAt = 0;
let retryDelay = 1000;
let retryTimer = null;

function setState(s) {
  state = s;
  for (const fn of stateListeners) fn(s);
}

function dispatch(type, data) {
  if (type === 'stats') {
    lastStats = data;
    statsSeen = true;
  } else {
    recent.push({at: Date.now(), type, data});
    if (recent.length > KEEP) recent.shift();
  }
  for (const fn of listeners) {
    try {
      fn(type, data);
    } catch (e) {
      console.warn('event listener failed', e); // a page's bug must not stop the stream
    }
  }
}

async function run() {
  // This run's own controller: stop() may replace or drop the module's.
  const ctl = new AbortController();
  controller = ctl;
  setState('connecting');
  try {
    await openEvents(dispatch, () => {
      connectedAt = Date.now();
      retryDelay = 1000;
      setState('live');
    }, ctl.signal);
  } catch (e) {
    if (ctl.signal.aborted) return;
    if (e && e.status === 401) {
      setState('offline');
      return;
    }
  }
  if (ctl.signal.aborted) return;
  // The stream ended (the gateway restarted or cut a slow reader): again.
  setState('error');
  retryTimer = setTimeout(run, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 30000);
}

export function start() {
  if (controller && !controller.signal.aborted) return;
  run();
}

export function stop() {
  clearTimeout(retryTimer);
  if (controller) controller.abort();
  controller = null;
  recent.length = 0;
  lastStats = null;
  statsSeen = false;
  setState('offline');
}

// fn(type, data) for every event from now on; returns the unsubscribe.
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function onState(fn) {
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

export function recentEvents() {
  return recent.slice();
}

export function latestStats() {
  return lastStats;
}

export function hasStats() {
  return statsSeen;
}

// Milliseconds the stream has been open (0: not open).
export function liveFor() {
  return state === 'live' ? Date.now() - connectedAt : 0;
}
