// Recent events: what the event stream brought since sign-in (key changes,
// quota alerts, bans), newest first, live.
import {empty, fmtTime, h, replace, section} from '../dom.js';
import * as stream from '../stream.js';

function summary(type, data) {
  if (data.key && data.key.id) return data.key.id + (data.key.name ? ' (' + data.key.name + ')' : '');
  if (data.ban && data.ban.identity) return data.ban.identity +
    (data.ban.reason ? ': ' + data.ban.reason : '');
  if (data.identity) return data.identity;
  return '';
}

export function render(main) {
  const filter = h('input', {type: 'search', id: 'event-filter', placeholder: 'filter by type or text',
                             'aria-label': 'filter events'});
  const listBox = h('div', {id: 'events-list'});
  const state = h('span', {class: 'muted small'});
  main.append(h('h1', {}, 'Events'),
    h('div', {class: 'toolbar toolbar-center'}, filter, state),
    section('Since this page was opened (newest first; stats ticks are not listed)', listBox));

  function draw() {
    const q = filter.value.trim().toLowerCase();
    const rows = stream.recentEvents().reverse()
      .filter((e) => !q || (e.type + ' ' + JSON.stringify(e.data)).toLowerCase().includes(q));
    if (!rows.length) {
      replace(listBox, empty(q ? 'No event matches.' :
        'No events yet. Key changes, quota alerts and bans appear here as they happen.'));
      return;
    }
    replace(listBox, h('ol', {class: 'event-list'}, rows.map((e) => h('li', {class: 'event'},
      h('div', {class: 'event-head'}, h('span', {class: 'muted small'}, fmtTime(e.at)),
        h('span', {class: 'pill event-type'}, e.type), h('span', {class: 'event-summary'},
                                                         summary(e.type, e.data))),
      h('details', {}, h('summary', {}, 'data'),
        h('pre', {}, JSON.stringify(e.data, null, 2)))))));
  }
  filter.addEventListener('input', draw);
  const off = stream.subscribe((type) => {
    if (type !== 'stats') draw();
  });
  const offState = stream.onState((s) => {
    state.textContent = 'stream: ' + s;
  });
  draw();
  return () => {
    off();
    offState();
  };
}
