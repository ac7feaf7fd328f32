// Online sessions: `onlineSessions` one page at a time (server-side cursors; Previous goes back
// through the cursors already seen), filtered by user-name prefix, NAS and framed IP. Starts
// and stops reload the page shown (throttled); an interim update of a row on the page updates
// it in place. Admins get a Disconnect button (`disconnectSession`) showing ACK, NAK or timeout.

import { graphql } from './api.js';
import { subscribe, throttle } from './live.js';
import {
  bytes, confirmAction, duration, el, fromTemplate, hashParams, row, sessionSeconds,
  setHashParams, showError, time,
} from './format.js';

const PAGE = `query Page($first: Int!, $after: String, $nas: String, $prefix: String, $ip: String) {
  onlineSessions(first: $first, after: $after, nas: $nas, usernamePrefix: $prefix, framedIp: $ip) {
    edges { node {
      id sessionId nasIpAddress nasPortId nasPortType startTime connectInfoStart
      callingStationId framedIpAddress userName inputOctets outputOctets sessionTime
    } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const NASES = 'query Nases { onlineCountsByNas { nasIpAddress } }';
const EVENTS = `subscription AllEvents { sessionEvents {
  kind session { id inputOctets outputOctets sessionTime }
} }`;
const DISCONNECT = `mutation Disconnect($id: Int!) {
  disconnectSession(id: $id) { result errorCause nasIpAddress }
}`;
const SIZES = [10, 25, 50, 100];

export function mount(main, ctx) {
  main.append(fromTemplate('tpl-sessions'));
  document.title = 'Online sessions · radacctd';
  const $ = (id) => document.getElementById(id);
  const form = $('sessions-filter');
  const tbody = $('sessions-rows');
  const error = $('sessions-error');
  const prev = $('sessions-prev');
  const next = $('sessions-next');
  const pageLabel = $('sessions-page');

  const params = hashParams();
  const filter = {
    user: params.get('user') || '',
    nas: params.get('nas') || '',
    ip: params.get('ip') || '',
    size: SIZES.includes(Number(params.get('size'))) ? Number(params.get('size')) : 25,
  };
  /** The `after` cursor of each page seen so far; the current page is the last. */
  let cursors = [null];
  let nextCursor = null;
  /** Disconnect outcomes by session id, kept across reloads of the page. */
  const outcomes = new Map();
  let alive = true;
  let generation = 0;

  form.user.value = filter.user;
  form.ip.value = filter.ip;
  form.size.value = String(filter.size);
  setNasOptions([]);

  function setNasOptions(nases) {
    const select = form.nas;
    const wanted = new Set(nases);
    if (filter.nas) wanted.add(filter.nas);
    select.replaceChildren(el('option', 'all', { value: '' }));
    for (const nas of [...wanted].sort()) select.append(el('option', nas, { value: nas }));
    select.value = filter.nas;
  }

  function outcomeText(d) {
    if (d.result === 'ACK') return 'ACK';
    if (d.result === 'NAK') return d.errorCause ? `NAK (Error-Cause ${d.errorCause})` : 'NAK';
    return 'timeout';
  }

  async function disconnect(s, button, status) {
    const ok = await confirmAction(
      `Disconnect session ${s.sessionId} of ${s.userName ?? 'unknown user'} on NAS ${s.nasIpAddress}?`,
      'Disconnect',
    );
    if (!ok) return;
    button.disabled = true;
    status.textContent = 'asking the NAS…';
    try {
      const d = (await graphql(DISCONNECT, { id: s.id })).disconnectSession;
      outcomes.set(s.id, outcomeText(d));
    } catch (e) {
      outcomes.set(s.id, `error: ${e.message}`);
    }
    status.textContent = outcomes.get(s.id);
    button.disabled = false;
  }

  function render(edges) {
    const now = Date.now();
    tbody.replaceChildren(
      ...edges.map(({ node: s }) => {
        const user = s.userName
          ? el('a', s.userName, { href: `#/user/${encodeURIComponent(s.userName)}` })
          : '';
        const cells = [
          String(s.id), user, s.sessionId, s.nasIpAddress, s.nasPortId, s.nasPortType,
          time(s.startTime), s.connectInfoStart, s.callingStationId, s.framedIpAddress,
          bytes(s.inputOctets), bytes(s.outputOctets), duration(sessionSeconds(s, now)),
        ];
        if (ctx.isAdmin) {
          const cell = el('div', '', { className: 'action' });
          const button = el('button', 'Disconnect', { type: 'button', className: 'danger' });
          const status = el('span', outcomes.get(s.id) || '', { className: 'outcome', role: 'status' });
          button.addEventListener('click', () => disconnect(s, button, status));
          cell.append(button, status);
          cells.push(cell);
        }
        const tr = row(cells, [0, 10, 11, 12]);
        tr.dataset.id = String(s.id);
        tr.dataset.start = s.startTime || '';
        return tr;
      }),
    );
    $('sessions-empty').hidden = edges.length > 0;
  }

  async function load() {
    const mine = ++generation;
    const vars = {
      first: filter.size,
      after: cursors[cursors.length - 1],
      nas: filter.nas || null,
      prefix: filter.user || null,
      ip: filter.ip || null,
    };
    let page;
    try {
      page = (await graphql(PAGE, vars)).onlineSessions;
    } catch (e) {
      if (alive && mine === generation) showError(error, e);
      return;
    }
    if (!alive || mine !== generation) return;
    showError(error, null);
    if (page.edges.length === 0 && cursors.length > 1) {
      // The page emptied (its sessions stopped): step back.
      cursors.pop();
      load();
      return;
    }
    render(page.edges);
    nextCursor = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    next.disabled = !nextCursor;
    prev.disabled = cursors.length <= 1;
    pageLabel.textContent = `Page ${cursors.length}`;
  }

  function applyFilter() {
    filter.user = form.user.value.trim();
    filter.nas = form.nas.value;
    filter.ip = form.ip.value.trim();
    filter.size = Number(form.size.value);
    const p = new URLSearchParams();
    for (const k of ['user', 'nas', 'ip']) if (filter[k]) p.set(k, filter[k]);
    if (filter.size !== 25) p.set('size', String(filter.size));
    setHashParams(p);
    cursors = [null];
    load();
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    applyFilter();
  });
  $('filter-clear').addEventListener('click', () => {
    form.user.value = '';
    form.nas.value = '';
    form.ip.value = '';
    applyFilter();
  });
  next.addEventListener('click', () => {
    if (!nextCursor) return;
    cursors.push(nextCursor);
    load();
  });
  prev.addEventListener('click', () => {
    if (cursors.length <= 1) return;
    cursors.pop();
    load();
  });

  /** An interim update of a row on the page: its octets and duration, in place. */
  function updateRow(s) {
    const tr = tbody.querySelector(`tr[data-id="${Number(s.id)}"]`);
    if (!tr) return;
    const cells = tr.children;
    cells[10].textContent = bytes(s.inputOctets);
    cells[11].textContent = bytes(s.outputOctets);
  }

  const reload = throttle(load, 1000);
  const unsubscribe = subscribe(
    EVENTS,
    {},
    (data) => {
      const e = data.sessionEvents;
      if (e.kind === 'UPDATE') updateRow(e.session);
      else reload();
    },
    reload,
  );
  graphql(NASES)
    .then((d) => alive && setNasOptions(d.onlineCountsByNas.map((c) => c.nasIpAddress)))
    .catch(() => {});
  load();
  return () => {
    alive = false;
    unsubscribe();
  };
}
