// Web sessions (admins): the web-session REST API (SPEC §6) for the chosen sites, with "log
// out all but current" for a user (POST action logout) and closing one session (DELETE).

import { closeWebSession, listWebSessions, logoutAllButCurrent } from './api.js';
import { confirmAction, duration, el, fromTemplate, row, showError } from './format.js';

export function mount(main, ctx) {
  main.append(fromTemplate('tpl-web-sessions'));
  document.title = 'Web sessions · radacctd';
  const $ = (id) => document.getElementById(id);
  const form = $('ws-filter');
  const mode = $('ws-sites-mode');
  const list = $('ws-sites-list');
  const error = $('ws-error');
  const notice = $('ws-notice');
  const tbody = $('ws-rows');
  let sites = 'current';
  let alive = true;

  function syncListField() {
    list.disabled = mode.value !== 'list';
  }
  syncListField();
  mode.addEventListener('change', syncListField);

  function readSites() {
    if (mode.value !== 'list') return mode.value;
    const names = list.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (names.length === 0) throw new Error('Name at least one site.');
    return names;
  }

  function say(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  async function act(question, label, action, done) {
    if (!(await confirmAction(question, label))) return;
    try {
      await action();
      say(done);
    } catch (e) {
      showError(error, e);
      return;
    }
    load();
  }

  function render(entries) {
    const current = ctx.session.sessionId;
    tbody.replaceChildren(
      ...entries.map((s) => {
        const isCurrent = s.session_id === current;
        const actions = el('div', '', { className: 'action' });
        if (s.session_type === 'http') {
          const close = el('button', isCurrent ? 'Close (this session)' : 'Close', {
            type: 'button', className: 'danger',
          });
          close.disabled = isCurrent;
          close.title = isCurrent ? 'Use Log out to end your own session' : `Close session ${s.session_id}`;
          close.addEventListener('click', () => act(
            `Close web session ${s.session_id} of ${s.login}?`,
            'Close',
            () => closeWebSession(s.session_id, sites),
            `Closed session ${s.session_id}.`,
          ));
          const all = el('button', 'Log out all but current', { type: 'button' });
          all.title = `Close every session of ${s.login} except the one of this page`;
          all.addEventListener('click', () => act(
            `Log out every web session of ${s.login} except this page's?`,
            'Log out',
            () => logoutAllButCurrent(s.domain, s.user_id, sites),
            `Logged out all sessions of ${s.login} but the current one.`,
          ));
          actions.append(close, all);
        }
        const conns = (s.connections || [])
          .map((c) => `${c.node} ${c.pid}${c.is_pid_alive ? '' : ' (node down)'}`)
          .join(', ');
        const id = el('span', s.session_id);
        if (isCurrent) id.append(el('span', ' (current)', { className: 'tag' }));
        const tr = row([s.login, s.domain, id, s.session_type, s.site, duration(s.ttl), conns, actions], [5]);
        tr.dataset.session = s.session_id;
        tr.dataset.type = s.session_type;
        tr.dataset.login = s.login;
        return tr;
      }),
    );
    $('ws-empty').hidden = entries.length > 0;
  }

  async function load() {
    try {
      const entries = await listWebSessions(sites);
      if (!alive) return;
      showError(error, null);
      render(entries);
    } catch (e) {
      if (alive) showError(error, e);
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    try {
      sites = readSites();
    } catch (e) {
      showError(error, e);
      return;
    }
    say('');
    load();
  });

  load();
  return () => {
    alive = false;
  };
}
