// Cache purge: one key, a prefix, a pattern, a tag, or everything.
import {api} from '../api.js';
import {confirmBox, field, fmtNum, h, replace, section} from '../dom.js';

const KINDS = [
  ['prefix', 'Path prefix', '/api/'],
  ['key', 'One URL (path and query)', '/api/market/overview?region=eu'],
  ['pattern', 'Pattern (* matches any run of characters)', '/api/*/v1*'],
  ['tag', 'Tag', 'market'],
  ['all', 'Everything', ''],
];

export function render(main) {
  const kind = h('select', {name: 'kind', id: 'purge-kind'},
                 KINDS.map(([k, label]) => h('option', {value: k}, label)));
  const value = h('input', {name: 'value', id: 'purge-value', placeholder: KINDS[0][2]});
  const valueField = field('Value', value);
  const result = h('div', {id: 'purge-result', 'aria-live': 'polite'});
  const form = h('form', {class: 'form-grid', id: 'purge-form'}, field('Purge by', kind),
                 valueField, h('div', {class: 'span-all row'},
                   h('button', {type: 'submit', class: 'danger'}, 'Purge')));
  main.append(h('h1', {}, 'Cache'),
    section('Purge cached responses', h('p', {class: 'muted'},
      'Removes responses from the cache of this gateway (and, with Redis, of the whole fleet). ' +
      'The next request for them goes to the upstream.'), form, result));

  kind.addEventListener('change', () => {
    const k = KINDS.find((x) => x[0] === kind.value);
    value.placeholder = k[2];
    valueField.hidden = kind.value === 'all';
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = kind.value === 'all' ? {all: true} : {[kind.value]: value.value.trim()};
    if (kind.value === 'all' && !await confirmBox(result, 'Purge every cached response?', 'Purge all')) {
      return;
    }
    replace(result, h('div', {class: 'state state-loading'}, 'Purging…'));
    try {
      const res = await api('POST', '/cache/purge', body);
      replace(result, h('div', {class: 'state state-ok', role: 'status'},
        'Purged ', h('strong', {id: 'purged-count'}, fmtNum(res.purged)),
        res.purged === 1 ? ' response' : ' responses',
        res.fleet ? ' across ' + fmtNum(res.gateways) + ' gateways' : '', '.'));
    } catch (e) {
      replace(result, h('div', {class: 'state state-error', role: 'alert'}, e.message));
    }
  });
}
