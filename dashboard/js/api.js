// The admin API as the dashboard calls it: the token (sessionStorage only,
// sent as a bearer header: no cookie, so no CSRF), JSON calls, and the
// Server-Sent Events of GET /events read through fetch() (EventSource
// cannot send an Authorization header).

const TOKEN_KEY = 'sluice.admin.token';

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// Called with the ApiError of every 401: the app signs out.
let onUnauthorized = null;
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const token = getToken();
  if (token) headers.set('Authorization', 'Bearer ' + token);
  return headers;
}

async function errorOf(res) {
  let message = res.status + ' ' + res.statusText;
  let body = null;
  try {
    body = await res.json();
    if (body && typeof body.message === 'string') message = body.message;
  } catch (e) {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, message, body);
}

// One admin call: the parsed JSON body (null for 204), or an ApiError.
export async function api(method, path, body) {
  const init = {method, headers: authHeaders(), cache: 'no-store'};
  if (body !== undefined) {
    init.headers.set('Content-Type', 'application/json');
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'the gateway cannot be reached (' + e.message + ')', null);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && onUnauthorized) onUnauthorized(err);
    throw err;
  }
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  return type.includes('json') ? res.json() : res.text();
}

// The text of a call that answers something other than JSON (CSV).
export async function apiText(path) {
  const res = await fetch(path, {headers: authHeaders(), cache: 'no-store'});
  if (!res.ok) throw await errorOf(res);
  return res.text();
}

// Does <err> mean "this gateway has no such endpoint" (a newer feature)?
export function isMissing(err) {
  return err instanceof ApiError && (err.status === 404 || err.status === 405);
}

// Parses SSE text as it arrives: calls onEvent(type, data) for each event
// whose data is JSON; comments (": ping") are ignored.
export function sseParser(onEvent) {
  let buffer = '';
  let type = '';
  let data = [];
  function line(text) {
    if (text === '') {
      if (data.length) {
        try {
          onEvent(type || 'message', JSON.parse(data.join('\n')));
        } catch (e) {
          // a malformed event is skipped, the stream goes on
        }
      }
      type = '';
      data = [];
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  return function feed(chunk) {
    buffer += chunk;
    let i;
    while ((i = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const sep = buffer[i] === '\r' && buffer[i + 1] === '\n' ? 2 : 1;
      line(buffer.slice(0, i));
      buffer = buffer.slice(i + sep);
    }
  };
}

// Opens GET /events and feeds it to onEvent until <signal> aborts it or the
// stream ends; resolves when it ends, rejects with an ApiError or a network
// error. onOpen() runs once the gateway answered 200.
export async function openEvents(onEvent, onOpen, signal) {
  const res = await fetch('/events', {headers: authHeaders(), cache: 'no-store', signal});
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && onUnauthorized) onUnauthorized(err);
    throw err;
  }
  onOpen();
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const feed = sseParser(onEvent);
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    feed(decoder.decode(value, {stream: true}));
  }
}
