// A user's page: the open sessions (`user.onlineSessions`) and the history over a chosen range
// (`sessionHistory`, live and archived), with a bar chart of the octets of each session drawn
// by uPlot (vendored, loaded only here). The user's `sessionEvents` reload both.

import { graphql } from './api.js';
import { subscribe, throttle } from './live.js';
import {
  bytes, duration, el, fromTemplate, hashParams, row, sessionSeconds, showError, time,
} from './format.js';

const USER = `query User($login: String!) {
  user(username: $login) {
    id login role
    onlineSessions { id sessionId nasIpAddress startTime framedIpAddress inputOctets outputOctets sessionTime }
  }
}`;
const HISTORY = `query History($id: Int!, $from: String!, $to: String, $first: Int!) {
  sessionHistory(userId: $id, from: $from, to: $to, first: $first) {
    id sessionId nasIpAddress startTime stopTime terminateCause framedIpAddress
    inputOctets outputOctets sessionTime
  }
}`;
const EVENTS = 'subscription UserEvents($id: Int) { sessionEvents(userId: $id) { kind } }';
/** Most sessions the history shows (the API's page is at most 1000). */
const HISTORY_LIMIT = 500;
const DEFAULT_RANGE_S = 7 * 86400;

/** UNIX seconds as a datetime-local value (local time, minutes). */
function toLocalInput(secs) {
  const d = new Date(secs * 1000);
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? null : Math.floor(t / 1000);
}

let uPlotModule = null;
async function loadUPlot() {
  if (!uPlotModule) uPlotModule = (await import('./vendor/uPlot.esm.js')).default;
  return uPlotModule;
}

async function drawChart(container, sessions) {
  const uPlot = await loadUPlot();
  container.replaceChildren();
  if (sessions.length === 0) {
    container.append(el('p', 'No session in this range.', { className: 'empty' }));
    return null;
  }
  const labels = sessions.map((s) => s.sessionId);
  const xs = sessions.map((_, i) => i);
  const ins = sessions.map((s) => s.inputOctets ?? 0);
  const outs = sessions.map((s) => s.outputOctets ?? 0);
  const n = sessions.length;
  const bars = uPlot.paths.bars;
  const opts = {
    width: Math.max(320, Math.min(container.clientWidth || 800, 1100)),
    height: 240,
    scales: { x: { time: false, range: () => [-0.5, n - 0.5] } },
    axes: [
      {
        incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500],
        values: (u, splits) => splits.map((i) => (Number.isInteger(i) && labels[i] ? labels[i].slice(0, 12) : '')),
        label: 'Session',
      },
      { values: (u, vals) => vals.map((v) => bytes(v)), size: 80, label: 'Octets' },
    ],
    series: [
      { label: 'Session', value: (u, i) => (i === null ? '–' : labels[i] ?? '') },
      {
        label: 'In', stroke: '#1f6feb', fill: 'rgba(31, 111, 235, 0.55)',
        paths: bars({ size: [0.4, 48], align: -1 }), points: { show: false },
        value: (u, v) => (v === null ? '–' : bytes(v)),
      },
      {
        label: 'Out', stroke: '#d97706', fill: 'rgba(217, 119, 6, 0.55)',
        paths: bars({ size: [0.4, 48], align: 1 }), points: { show: false },
        value: (u, v) => (v === null ? '–' : bytes(v)),
      },
    ],
  };
  return new uPlot(opts, [xs, ins, outs], container);
}

export function mount(main, ctx) {
  main.append(fromTemplate('tpl-user'));
  const $ = (id) => document.getElementById(id);
  const form = $('user-form');
  const error = $('user-error');
  const body = $('user-body');
  const login = ctx.args[0] || '';
  const params = hashParams();
  const now = Math.floor(Date.now() / 1000);
  const from = Number(params.get('from')) || now - DEFAULT_RANGE_S;
  const to = Number(params.get('to')) || null;
  let alive = true;
  let chart = null;
  let unsubscribe = () => {};

  document.title = login ? `${login} · radacctd` : 'User · radacctd';
  form.user.value = login;
  form.from.value = toLocalInput(from);
  form.to.value = to ? toLocalInput(to) : '';
  $('user-title').textContent = login ? `User ${login}` : 'User';

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = form.user.value.trim();
    if (!name) {
      showError(error, { message: 'Enter a user name.' });
      return;
    }
    const f = fromLocalInput(form.from.value);
    const t = form.to.value ? fromLocalInput(form.to.value) : null;
    if (f === null) {
      showError(error, { message: 'Choose the start of the range.' });
      return;
    }
    if (t !== null && t <= f) {
      showError(error, { message: 'The end of the range must be after its start.' });
      return;
    }
    const p = new URLSearchParams({ from: String(f) });
    if (t !== null) p.set('to', String(t));
    location.hash = `#/user/${encodeURIComponent(name)}?${p}`;
  });

  async function load() {
    let user;
    let history;
    try {
      user = (await graphql(USER, { login })).user;
      history = (await graphql(HISTORY, {
        id: user.id, from: String(from), to: to === null ? null : String(to), first: HISTORY_LIMIT,
      })).sessionHistory;
    } catch (e) {
      if (alive) {
        showError(error, e);
        body.hidden = true;
      }
      return null;
    }
    if (!alive) return null;
    showError(error, null);
    body.hidden = false;
    const t = Date.now();
    $('user-online-rows').replaceChildren(
      ...user.onlineSessions.map((s) => row([
        String(s.id), s.sessionId, s.nasIpAddress, time(s.startTime), s.framedIpAddress,
        bytes(s.inputOctets), bytes(s.outputOctets), duration(sessionSeconds(s, t)),
      ], [0, 5, 6, 7])),
    );
    $('user-online-count').textContent = `(${user.onlineSessions.length})`;
    $('user-history-rows').replaceChildren(
      ...history.map((s) => row([
        String(s.id), s.sessionId, s.nasIpAddress, time(s.startTime),
        s.stopTime ? time(s.stopTime) : 'online', s.terminateCause, s.framedIpAddress,
        bytes(s.inputOctets), bytes(s.outputOctets), duration(sessionSeconds(s, t)),
      ], [0, 7, 8, 9])),
    );
    $('user-history-count').textContent = history.length >= HISTORY_LIMIT
      ? `(the first ${HISTORY_LIMIT}: narrow the range)`
      : `(${history.length})`;
    if (chart) chart.destroy();
    chart = await drawChart($('user-chart'), history);
    return user;
  }

  if (login) {
    load().then((user) => {
      if (!user || !alive) return;
      const reload = throttle(load, 1000);
      unsubscribe = subscribe(EVENTS, { id: user.id }, reload, reload);
    });
  }
  return () => {
    alive = false;
    unsubscribe();
    if (chart) chart.destroy();
  };
}
