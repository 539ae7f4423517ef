// DOM helpers: every string from the gateway goes in as text (textContent),
// never as HTML, so a key named <img src=x onerror=...> is shown, not run.

// h('button', {class: 'primary', onclick: fn}, 'Save', child...)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// The three states every list or chart has besides its content.
export function loading(what) {
  return h('div', {class: 'state state-loading', role: 'status'}, h('span', {class: 'spinner'}),
           'Loading ' + what + '…');
}

export function empty(text) {
  return h('div', {class: 'state state-empty'}, text);
}

export function errorState(err, retry) {
  return h('div', {class: 'state state-error', role: 'alert'},
           h('strong', {}, 'Error: '), err && err.message ? err.message : String(err),
           retry ? h('button', {type: 'button', class: 'ghost', onclick: retry}, 'Retry') : null);
}

export function unavailable(what, detail) {
  return h('div', {class: 'state state-unavailable'},
           h('strong', {}, what + ' not available on this gateway. '), detail || '');
}

// A short message in the corner: kind 'ok' or 'error'.
export function toast(text, kind) {
  const box = document.getElementById('toasts');
  const el = h('div', {class: 'toast toast-' + (kind || 'ok'), role: 'status'}, text);
  box.appendChild(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

// A table: columns [{label, cell(row) -> node|string, class}].
export function table(columns, rows, attrs) {
  return h('div', {class: 'table-wrap'},
           h('table', attrs || {},
             h('thead', {}, h('tr', {}, columns.map((c) => h('th', {class: c.class}, c.label)))),
             h('tbody', {}, rows.map((row) => h('tr', {},
               columns.map((c) => h('td', {class: c.class, 'data-label': c.label},
                                    c.cell(row))))))));
}

// A field: label + control.
export function field(label, control, hint) {
  const id = control.id || ('f-' + Math.random().toString(36).slice(2, 10));
  control.id = id;
  return h('div', {class: 'field'}, h('label', {for: id}, label), control,
           hint ? h('small', {class: 'muted'}, hint) : null);
}

// An in-page confirmation (no window.confirm): resolves true or false.
export function confirmBox(container, text, okLabel) {
  return new Promise((resolve) => {
    const box = h('div', {class: 'confirm', role: 'alertdialog'},
                  h('p', {}, text),
                  h('div', {class: 'row'},
                    h('button', {type: 'button', class: 'danger',
                                 onclick: () => { box.remove(); resolve(true); }},
                      okLabel || 'Confirm'),
                    h('button', {type: 'button', class: 'ghost',
                                 onclick: () => { box.remove(); resolve(false); }}, 'Cancel')));
    container.prepend(box);
    box.querySelector('button').focus();
  });
}

// Formats.
// UTC, as the gateway counts; <short>: to the minute.
export function fmtTime(value, short) {
  if (value === null || value === undefined || value === '') return '—';
  const d = typeof value === 'number' ? new Date(value < 1e12 ? value * 1000 : value)
                                      : new Date(value);
  if (isNaN(d.getTime())) return String(value);
  const iso = d.toISOString().replace('T', ' ');
  return short ? iso.slice(0, 16) : iso.slice(0, 19) + 'Z';
}

export function fmtNum(n, digits) {
  if (n === null || n === undefined) return '—';
  if (typeof n !== 'number') return String(n);
  return n.toLocaleString('en-US', {maximumFractionDigits: digits === undefined ? 2 : digits});
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
}

export function section(title, ...children) {
  return h('section', {class: 'card'}, h('h2', {}, title), ...children);
}
