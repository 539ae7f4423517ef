// Violators and bans: who broke limits in the last 24 h (GET /violations),
// the bans in force (GET /bans), ban (POST /bans) and unban (DELETE).
// A gateway without these endpoints (404) shows "not available".
import {api, isMissing} from '../api.js';
import {confirmBox, empty, errorState, field, fmtDuration, fmtNum, fmtTime, h, loading, replace,
        section, table, toast, unavailable} from '../dom.js';
import * as stream from '../stream.js';

export function render(main) {
  const violators = h('div', {id: 'violators'});
  const bansBox = h('div', {id: 'bans-list'});
  const identity = h('input', {name: 'identity', required: true, placeholder: 'ip:198.51.100.7'});
  const duration = h('input', {name: 'duration', value: '1h', required: true});
  const reason = h('input', {name: 'reason', maxlength: 255, placeholder: 'scraping'});
  const err = h('p', {class: 'error-text', role: 'alert', hidden: true});
  const form = h('form', {class: 'form-grid', id: 'ban-form'}, field('Identity', identity,
    'ip:…, key:…, sub:…'), field('Duration', duration, '10m, 1h, 7d'), field('Reason', reason),
    h('div', {class: 'span-all'}, err),
    h('div', {class: 'span-all row'}, h('button', {type: 'submit', class: 'danger'}, 'Ban')));
  main.append(h('h1', {}, 'Violators & bans'),
    h('div', {class: 'grid-2'}, section('Ban an identity', form),
      section('Top violators (24 h)', violators)),
    section('Bans in force', bansBox));

  async function loadViolators() {
    replace(violators, loading('violators'));
    try {
      const res = await api('GET', '/violations?top=20&window=24h');
      const rows = res.violators || [];
      replace(violators, rows.length ? table([
        {label: 'Identity', cell: (v) => h('code', {}, v.identity)},
        {label: 'Violations', class: 'num', cell: (v) => fmtNum(v.violations)},
        {label: 'Last', class: 'nowrap', cell: (v) => fmtTime(v.last, true)},
        {label: '', class: 'cell-actions', cell: (v) => v.banned
          ? h('span', {class: 'pill pill-revoked'}, 'banned')
          : h('button', {type: 'button', class: 'ghost', onclick: () => {
            identity.value = v.identity;
            reason.value = reason.value || fmtNum(v.violations) + ' violations in 24 h';
            identity.focus();
          }}, 'Ban…')},
      ], rows, {id: 'violators-table'}) : empty('No violations in the last 24 hours.'));
    } catch (e) {
      replace(violators, isMissing(e)
        ? unavailable('Violations', 'GET /violations answered ' + e.status + '.')
        : errorState(e, loadViolators));
    }
  }

  async function unban(ban) {
    const ok = await confirmBox(bansBox, 'Lift the ban on ' + ban.identity + '?', 'Unban');
    if (!ok) return;
    try {
      await api('DELETE', '/bans/' + encodeURIComponent(ban.identity));
      toast('Ban on ' + ban.identity + ' lifted');
      reload();
    } catch (e) {
      toast(e.message, 'error');
    }
  }

  async function loadBans() {
    if (!bansBox.firstChild) replace(bansBox, loading('bans'));
    try {
      const res = await api('GET', '/bans');
      const rows = res.bans || [];
      replace(bansBox, rows.length ? table([
        {label: 'Identity', cell: (b) => h('code', {class: 'ban-identity'}, b.identity)},
        {label: 'Reason', cell: (b) => b.reason || '—'},
        {label: 'Source', cell: (b) => h('span', {class: 'pill'}, b.source)},
        {label: 'Since', class: 'nowrap', cell: (b) => fmtTime(b.created, true)},
        {label: 'Until', class: 'nowrap', cell: (b) => fmtTime(b.until, true)},
        {label: 'Left', class: 'nowrap', cell: (b) => fmtDuration(b.retry_after)},
        {label: 'Count', class: 'num', cell: (b) => fmtNum(b.count)},
        {label: '', class: 'cell-actions', cell: (b) => h('button', {type: 'button', class: 'ghost',
          'data-action': 'unban', onclick: () => unban(b)}, 'Unban')},
      ], rows, {id: 'bans-table'}) : empty('No bans in force.'));
      form.hidden = false;
    } catch (e) {
      if (isMissing(e)) {
        replace(bansBox, unavailable('Bans', 'GET /bans answered ' + e.status + '.'));
        form.hidden = true;
        if (!form.parentElement.querySelector('.state-unavailable')) {
          form.parentElement.append(unavailable('Banning', 'POST /bans is missing too.'));
        }
      } else {
        replace(bansBox, errorState(e, loadBans));
      }
    }
  }

  function reload() {
    loadBans();
    loadViolators();
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {identity: identity.value.trim(), duration: duration.value.trim()};
    if (reason.value.trim()) body.reason = reason.value.trim();
    try {
      await api('POST', '/bans', body);
      err.hidden = true;
      toast(body.identity + ' banned for ' + body.duration);
      identity.value = '';
      reason.value = '';
      reload();
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  const off = stream.subscribe((type) => {
    if (type === 'ban.added' || type === 'ban.removed') reload();
  });
  reload();
  return off;
}
