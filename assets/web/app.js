// The console's shell: login, the top bar, and the hash router (#/overview, #/sessions,
// #/user/NAME, #/web-sessions) that mounts one page at a time. Each page module exports
// `mount(main, ctx)` and returns a function that unmounts it (closing its subscriptions).

import * as api from './api.js';
import * as live from './live.js';
import { fromTemplate, showError } from './format.js';
import * as overview from './overview.js';
import * as sessions from './sessions.js';
import * as user from './user.js';
import * as webSessions from './web-sessions.js';

const PAGES = {
  overview,
  sessions,
  user,
  'web-sessions': webSessions,
};

const main = document.getElementById('main');
const topbar = document.getElementById('topbar');
let unmount = null;
/** { session, role, isAdmin } once logged in. */
let ctx = null;

function clearPage() {
  if (unmount) unmount();
  unmount = null;
  main.replaceChildren();
}

function showLogin(message = '') {
  clearPage();
  live.stop();
  ctx = null;
  topbar.hidden = true;
  document.title = 'Log in · radacctd';
  main.append(fromTemplate('tpl-login'));
  const form = document.getElementById('login-form');
  const error = document.getElementById('login-error');
  const submit = document.getElementById('login-submit');
  showError(error, message ? { message } : null);
  document.getElementById('login-user').focus();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      showError(error, { message: 'Enter a user name and a password.' });
      return;
    }
    submit.disabled = true;
    showError(error, null);
    try {
      await api.login(username, password);
      form.password.value = '';
      await enter();
    } catch (e) {
      let text = e.message;
      if (e.status === 401) text = 'Wrong user name or password.';
      else if (e.status === 429) text = `Too many failed logins: try again in ${e.retryAfter || 60} s.`;
      showError(error, { message: text });
      form.password.select();
    } finally {
      submit.disabled = false;
    }
  });
}

/** After login (or a reload with a token): learn the role, show the shell, route. */
async function enter() {
  const s = api.session();
  if (!s) {
    showLogin();
    return;
  }
  let me;
  try {
    me = (await api.graphql('query Me($id: Int!) { user(id: $id) { login role } }', { id: s.userId })).user;
  } catch (e) {
    if (e.status === 401) return; // onExpired shows the login page.
    showLogin(e.message);
    return;
  }
  ctx = { session: s, role: me.role, isAdmin: me.role === 'admin' };
  document.getElementById('whoami').textContent = `${me.login} (${me.role})`;
  for (const node of document.querySelectorAll('.admin-only')) node.hidden = !ctx.isAdmin;
  topbar.hidden = false;
  live.start();
  if (!location.hash || location.hash === '#/' || location.hash === '#') {
    history.replaceState(null, '', '#/overview');
  }
  route();
}

function route() {
  if (!ctx) return;
  const path = location.hash.replace(/^#\/?/, '').split('?')[0];
  const [name, ...rest] = path.split('/');
  let page = PAGES[name];
  if (!page || (name === 'web-sessions' && !ctx.isAdmin)) {
    history.replaceState(null, '', '#/overview');
    page = overview;
  }
  clearPage();
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    if (a.dataset.page === (PAGES[name] ? name : 'overview')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  unmount = page.mount(main, { ...ctx, args: rest.map(decodeURIComponent) });
  for (const node of main.querySelectorAll('.admin-only')) node.hidden = !ctx.isAdmin;
  main.focus({ preventScroll: true });
}

document.getElementById('logout').addEventListener('click', async () => {
  live.stop();
  await api.logout();
  history.replaceState(null, '', '#/');
  showLogin();
});

live.onStatus((status) => {
  const node = document.getElementById('live');
  node.dataset.state = status;
  node.textContent = { live: 'live', connecting: 'reconnecting…', off: 'offline' }[status];
});

// A refused WebSocket may mean the token is gone: any call tells (401 shows the login page).
live.onRefused(() => {
  const s = api.session();
  if (s) api.graphql('query Me($id: Int!) { user(id: $id) { id } }', { id: s.userId }).catch(() => {});
});

api.onExpired(() => {
  if (ctx) showLogin('Your session has ended: log in again.');
});

window.addEventListener('hashchange', route);

if (api.session()) enter();
else showLogin();
