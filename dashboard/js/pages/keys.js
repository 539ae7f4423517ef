// Keys: search, create (the secret shown once, with a copy button), update
// tier and quotas, rotate with a grace period, revoke.
import {api} from '../api.js';
import {confirmBox, empty, errorState, field, fmtNum, fmtTime, h, loading, replace, section, table,
        toast} from '../dom.js';
import * as stream from '../stream.js';

// Tiers seen on keys, offered as suggestions (the API has no list of tiers;
// an unknown one is refused with a message naming the valid ones).
function tierList(keys) {
  const tiers = new Set(['free', 'pro']);
  for (const k of keys) tiers.add(k.tier);
  return h('datalist', {id: 'tier-list'}, [...tiers].sort().map((t) => h('option', {value: t})));
}

// '' -> undefined (not sent), 'tier' -> null (the tier's quota), else a number.
function quotaValue(text) {
  const t = text.trim();
  if (t === '') return undefined;
  if (t === 'tier' || t === 'none' || t === '-') return null;
  return Number(t);
}

function csv(text) {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  return list.length ? list : undefined;
}

function quotaText(q) {
  if (!q) return 'tier';
  const parts = [];
  if (q.monthly !== null && q.monthly !== undefined) parts.push(fmtNum(q.monthly) + '/month');
  if (q.daily !== null && q.daily !== undefined) parts.push(fmtNum(q.daily) + '/day');
  return parts.length ? parts.join(', ') : 'tier';
}

// The secret, once: a code block, a copy button and a Done that removes it.
function secretPanel(title, result, onDone) {
  const code = h('code', {class: 'secret', id: 'new-secret'}, result.secret);
  const copy = h('button', {type: 'button', class: 'primary', id: 'copy-secret'}, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(result.secret);
      copy.textContent = 'Copied';
    } catch (e) {
      // no clipboard permission: select it for Ctrl-C
      const range = document.createRange();
      range.selectNodeContents(code);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      copy.textContent = 'Selected: press Ctrl-C';
    }
  });
  const panel = h('div', {class: 'card secret-panel', role: 'region', 'aria-label': title},
    h('h2', {}, title),
    h('p', {}, 'Key ', h('strong', {}, result.key.id), ' (', result.key.name || 'no name', '). ',
      h('strong', {}, 'Copy the secret now: it is not shown again.')),
    h('div', {class: 'secret-row'}, code, copy),
    result.signing_secret ? h('p', {}, 'Signing secret: ', h('code', {class: 'secret'},
                                                              result.signing_secret)) : null,
    h('button', {type: 'button', class: 'ghost', id: 'secret-done',
                 onclick: () => { panel.remove(); onDone(); }}, 'Done'));
  return panel;
}

function createForm(onCreated) {
  const tier = h('input', {name: 'tier', list: 'tier-list', required: true, placeholder: 'pro'});
  const name = h('input', {name: 'name', maxlength: 128});
  const owner = h('input', {name: 'owner', maxlength: 128});
  const scopes = h('input', {name: 'scopes', placeholder: 'orders:read, orders:write'});
  const limits = h('input', {name: 'limits', placeholder: '100/min'});
  const monthly = h('input', {name: 'quota_monthly', inputmode: 'numeric'});
  const daily = h('input', {name: 'quota_daily', inputmode: 'numeric'});
  const expires = h('input', {name: 'expires', placeholder: '90d'});
  const err = h('p', {class: 'error-text', role: 'alert', hidden: true});
  const form = h('form', {class: 'card form-grid', id: 'create-key-form'},
    h('h2', {class: 'span-all'}, 'New key'),
    field('Tier', tier), field('Name', name), field('Owner', owner),
    field('Scopes', scopes, 'comma-separated'), field('Limits', limits, 'replace the tier\'s'),
    field('Monthly quota', monthly, 'blank: the tier\'s'),
    field('Daily quota', daily, 'blank: the tier\'s'), field('Expires in', expires, 'blank: never'),
    h('div', {class: 'span-all row'}, err),
    h('div', {class: 'span-all row'}, h('button', {type: 'submit', class: 'primary'}, 'Create key'),
      h('button', {type: 'button', class: 'ghost', onclick: () => form.remove()}, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {tier: tier.value.trim()};
    if (name.value.trim()) body.name = name.value.trim();
    if (owner.value.trim()) body.owner = owner.value.trim();
    if (csv(scopes.value)) body.scopes = csv(scopes.value);
    if (csv(limits.value)) body.limits = csv(limits.value);
    if (quotaValue(monthly.value) !== undefined) body.quota_monthly = quotaValue(monthly.value);
    if (quotaValue(daily.value) !== undefined) body.quota_daily = quotaValue(daily.value);
    if (expires.value.trim()) body.expires = expires.value.trim();
    try {
      const result = await api('POST', '/keys', body);
      form.remove();
      onCreated(result);
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  return form;
}

function editForm(key, onSaved, onCancel) {
  const tier = h('input', {name: 'tier', list: 'tier-list', value: key.tier, required: true});
  const monthly = h('input', {name: 'quota_monthly', inputmode: 'numeric',
                              value: key.quota && key.quota.monthly !== null ? key.quota.monthly : ''});
  const daily = h('input', {name: 'quota_daily', inputmode: 'numeric',
                            value: key.quota && key.quota.daily !== null ? key.quota.daily : ''});
  const limits = h('input', {name: 'limits', value: (key.limits || []).join(', ')});
  const err = h('p', {class: 'error-text', role: 'alert', hidden: true});
  const form = h('form', {class: 'form-grid edit-form'},
    field('Tier', tier), field('Monthly quota', monthly, 'blank: the tier\'s'),
    field('Daily quota', daily, 'blank: the tier\'s'),
    field('Limits', limits, 'blank: the tier\'s'), h('div', {class: 'span-all'}, err),
    h('div', {class: 'span-all row'}, h('button', {type: 'submit', class: 'primary'}, 'Save'),
      h('button', {type: 'button', class: 'ghost', onclick: onCancel}, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const m = monthly.value.trim();
    const d = daily.value.trim();
    const body = {tier: tier.value.trim(), quota_monthly: m === '' ? null : Number(m),
                  quota_daily: d === '' ? null : Number(d), limits: csv(limits.value) || null};
    try {
      await api('PATCH', '/keys/' + encodeURIComponent(key.id), body);
      toast('Key ' + key.id + ' updated');
      onSaved();
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  return form;
}

function rotateForm(key, onRotated, onCancel) {
  const grace = h('input', {name: 'grace', value: '1h'});
  const err = h('p', {class: 'error-text', role: 'alert', hidden: true});
  const form = h('form', {class: 'form-grid edit-form'},
    field('Grace period', grace, 'the old secret keeps working this long (0s: stops now)'),
    h('div', {class: 'span-all'}, err),
    h('div', {class: 'span-all row'}, h('button', {type: 'submit', class: 'primary'}, 'Rotate'),
      h('button', {type: 'button', class: 'ghost', onclick: onCancel}, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const body = grace.value.trim() ? {grace: grace.value.trim()} : {};
      onRotated(await api('POST', '/keys/' + encodeURIComponent(key.id) + '/rotate', body));
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  return form;
}

function matches(key, q) {
  if (!q) return true;
  const hay = [key.id, key.name, key.owner, key.tier, key.prefix, key.state].join(' ')
    .toLowerCase();
  return q.toLowerCase().split(/\s+/).every((w) => hay.includes(w));
}

export function render(main) {
  let keys = [];
  const top = h('div', {id: 'keys-top'});
  const listBox = h('div', {id: 'keys-list'});
  const search = h('input', {type: 'search', id: 'key-search', placeholder: 'Search id, name, owner, tier…',
                             'aria-label': 'search keys'});
  const showRevoked = h('input', {type: 'checkbox', id: 'show-revoked'});
  const newBtn = h('button', {type: 'button', class: 'primary', id: 'new-key'}, 'New key');
  main.append(h('h1', {}, 'Keys'),
    h('div', {class: 'toolbar toolbar-center'}, search,
      h('label', {class: 'check'}, showRevoked, 'show revoked'), newBtn),
    top, section('API keys', listBox));

  // A form or confirmation in a row of its own under the key's row, as wide
  // as the table; one at a time per key.
  function openBelow(button) {
    const tr = button.closest('tr');
    const next = tr.nextElementSibling;
    if (next && next.classList.contains('extra-row')) next.remove();
    const cell = h('td', {colspan: tr.children.length});
    const extra = h('tr', {class: 'extra-row', dataset: {key: tr.dataset.key || ''}}, cell);
    tr.after(extra);
    return {cell, close: () => extra.remove()};
  }

  function rowActions(key) {
    if (key.state === 'revoked') return h('span', {class: 'muted'}, 'revoked');
    return h('div', {class: 'actions'},
      h('a', {class: 'button ghost', href: '#/usage?key=' + encodeURIComponent(key.id)}, 'Usage'),
      h('button', {type: 'button', class: 'ghost', 'data-action': 'edit', onclick: (ev) => {
        const below = openBelow(ev.currentTarget);
        below.cell.append(editForm(key, load, below.close));
        below.cell.querySelector('input').focus();
      }}, 'Edit'),
      h('button', {type: 'button', class: 'ghost', 'data-action': 'rotate', onclick: (ev) => {
        const below = openBelow(ev.currentTarget);
        below.cell.append(rotateForm(key, (res) => {
          below.close();
          top.prepend(secretPanel('Rotated: new secret', res, () => {}));
          top.scrollIntoView({block: 'start'});
          load();
        }, below.close));
        below.cell.querySelector('input').focus();
      }}, 'Rotate'),
      h('button', {type: 'button', class: 'danger', 'data-action': 'revoke', onclick: async (ev) => {
        const below = openBelow(ev.currentTarget);
        const ok = await confirmBox(below.cell, 'Revoke key ' + key.id + ' (' +
                                    (key.name || 'no name') + ')? Its secret stops working at once.',
                                    'Revoke');
        below.close();
        if (!ok) return;
        try {
          await api('DELETE', '/keys/' + encodeURIComponent(key.id));
          toast('Key ' + key.id + ' revoked');
          load();
        } catch (e) {
          toast(e.message, 'error');
        }
      }}, 'Revoke'));
  }

  function draw() {
    const q = search.value.trim();
    const shown = keys.filter((k) => (showRevoked.checked || k.state !== 'revoked') && matches(k, q));
    if (!keys.length) {
      replace(listBox, empty('No keys yet. Create one with "New key".'));
      return;
    }
    if (!shown.length) {
      replace(listBox, empty(q ? 'No key matches "' + q + '".'
                               : 'No active keys (the others are revoked: tick "show revoked").'));
      return;
    }
    replace(listBox, table([
      {label: 'Key', cell: (k) => h('div', {class: 'key-cell'},
        h('div', {class: 'key-name'}, k.name || '(no name)'), h('code', {class: 'small'}, k.id),
        k.owner ? h('div', {class: 'muted small key-owner'}, 'owner: ', k.owner) : null)},
      {label: 'Tier', cell: (k) => k.tier},
      {label: 'Prefix', cell: (k) => h('code', {}, k.prefix)},
      {label: 'State', cell: (k) => h('div', {}, h('span', {class: 'pill pill-' + k.state}, k.state),
        k.rotated_until ? h('div', {class: 'muted small'}, 'old secret until ',
                            fmtTime(k.rotated_until)) : null)},
      {label: 'Quota', cell: (k) => quotaText(k.quota)},
      {label: 'Created', class: 'nowrap', cell: (k) => fmtTime(k.created_at, true)},
      {label: 'Last used', class: 'nowrap', cell: (k) => fmtTime(k.last_used_at, true)},
      {label: '', class: 'cell-actions', cell: rowActions},
    ], shown, {id: 'keys-table'}));
  }

  async function load() {
    if (!keys.length) replace(listBox, loading('keys'));
    try {
      const res = await api('GET', '/keys');
      keys = res.keys || [];
      const old = document.getElementById('tier-list');
      if (old) old.remove();
      main.append(tierList(keys));
      draw();
    } catch (e) {
      replace(listBox, errorState(e, load));
    }
  }

  newBtn.addEventListener('click', () => {
    if (document.getElementById('create-key-form')) return;
    top.prepend(createForm((result) => {
      top.prepend(secretPanel('Key created', result, () => {}));
      load();
    }));
    document.querySelector('#create-key-form input').focus();
  });
  search.addEventListener('input', draw);
  showRevoked.addEventListener('change', draw);
  const off = stream.subscribe((type) => {
    if (type.startsWith('key.') && !listBox.querySelector('.extra-row')) load();
  });
  load();
  return off;
}
