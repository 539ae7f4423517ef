// Access lists: the run-time entries (GET /access), add (POST) and delete
// (DELETE /access/{id}).
import {api, isMissing} from '../api.js';
import {confirmBox, empty, errorState, field, fmtTime, h, loading, replace, section, table, toast,
        unavailable} from '../dom.js';

export function render(main) {
  const listBox = h('div', {id: 'access-list'});
  const list = h('select', {name: 'list'}, h('option', {value: 'deny'}, 'deny'),
                 h('option', {value: 'allow'}, 'allow'));
  const cidr = h('input', {name: 'cidr', required: true, placeholder: '203.0.113.0/24'});
  const ttl = h('input', {name: 'ttl', placeholder: '1h'});
  const note = h('input', {name: 'note', maxlength: 255});
  const err = h('p', {class: 'error-text', role: 'alert', hidden: true});
  const form = h('form', {class: 'form-grid', id: 'access-form'}, field('List', list),
    field('Network', cidr, 'a CIDR or one address'), field('Expires after', ttl, 'blank: until deleted'),
    field('Note', note), h('div', {class: 'span-all'}, err),
    h('div', {class: 'span-all row'}, h('button', {type: 'submit', class: 'primary'}, 'Add')));
  main.append(h('h1', {}, 'Access lists'),
    h('p', {class: 'muted'}, 'Entries added at run time; they join the lists of the config file ' +
      'and reach every gateway of a fleet.'),
    section('Add an entry', form), section('Entries', listBox));

  async function remove(entry) {
    const ok = await confirmBox(listBox, 'Delete ' + entry.list + ' entry ' + entry.cidr + '?',
                                'Delete');
    if (!ok) return;
    try {
      await api('DELETE', '/access/' + encodeURIComponent(entry.id));
      toast('Entry ' + entry.cidr + ' deleted');
      load();
    } catch (e) {
      toast(e.message, 'error');
    }
  }

  async function load() {
    if (!listBox.firstChild) replace(listBox, loading('entries'));
    try {
      const res = await api('GET', '/access');
      const rows = res.entries || [];
      replace(listBox, rows.length ? table([
        {label: 'Id', class: 'num', cell: (e) => e.id},
        {label: 'List', cell: (e) => h('span', {class: 'pill pill-' + e.list}, e.list)},
        {label: 'Network', cell: (e) => h('code', {}, e.cidr)},
        {label: 'Note', cell: (e) => e.note || '—'},
        {label: 'Created', class: 'nowrap', cell: (e) => fmtTime(e.created, true)},
        {label: 'Expires', class: 'nowrap', cell: (e) => e.expires ? fmtTime(e.expires, true) : 'never'},
        {label: '', class: 'cell-actions', cell: (e) => h('button', {type: 'button',
          class: 'ghost', 'data-action': 'delete', onclick: () => remove(e)}, 'Delete')},
      ], rows, {id: 'access-table'}) : empty('No run-time entries.'));
    } catch (e) {
      replace(listBox, isMissing(e) ? unavailable('Access lists', 'GET /access answered ' +
                                                  e.status + '.') : errorState(e, load));
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {list: list.value, cidr: cidr.value.trim()};
    if (ttl.value.trim()) body.ttl = ttl.value.trim();
    if (note.value.trim()) body.note = note.value.trim();
    try {
      await api('POST', '/access', body);
      err.hidden = true;
      toast(body.list + ' ' + body.cidr + ' added');
      cidr.value = '';
      note.value = '';
      load();
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  load();
}
