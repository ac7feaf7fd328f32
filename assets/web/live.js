// Live updates: one WebSocket to /graphql/ws speaking graphql-transport-ws, with the token in
// the connection_init payload. Pages subscribe to `sessionEvents`; when the connection drops,
// it reconnects with backoff and tells the pages to reload what they show (they may have missed
// events meanwhile). No polling: nothing is fetched unless an event or a reconnect says so.

import { session } from './api.js';

const PROTOCOL = 'graphql-transport-ws';
const MAX_BACKOFF_MS = 30000;

let socket = null;
let acked = false;
let nextId = 1;
let backoff = 1000;
let reconnectTimer = null;
let stopped = true;
/** id -> { query, variables, onData, onReconnect } */
const subscriptions = new Map();
const statusListeners = new Set();
const refusedListeners = new Set();
let currentStatus = 'off';

function setStatus(status) {
  currentStatus = status;
  for (const fn of statusListeners) fn(status);
}

/** Tells `fn` the connection state now and on every change: off, connecting, live. */
export function onStatus(fn) {
  statusListeners.add(fn);
  fn(currentStatus);
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function sendSubscribe(id, sub) {
  send({ id, type: 'subscribe', payload: { query: sub.query, variables: sub.variables } });
}

function connect() {
  const s = session();
  if (!s || stopped) return;
  clearTimeout(reconnectTimer);
  setStatus('connecting');
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;
  const ws = new WebSocket(url, PROTOCOL);
  socket = ws;
  acked = false;
  let wasLive = false;
  ws.addEventListener('open', () => {
    ws.send(JSON.stringify({ type: 'connection_init', payload: { Authtoken: s.token } }));
  });
  ws.addEventListener('message', (event) => {
    if (socket !== ws) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (message.type) {
      case 'connection_ack':
        acked = true;
        wasLive = true;
        backoff = 1000;
        for (const [id, sub] of subscriptions) sendSubscribe(id, sub);
        setStatus('live');
        // What changed while the connection was down is not replayed: reload.
        for (const sub of subscriptions.values()) sub.onReconnect?.();
        break;
      case 'next': {
        const sub = subscriptions.get(message.id);
        if (sub && message.payload?.data) sub.onData(message.payload.data);
        break;
      }
      case 'ping':
        send({ type: 'pong' });
        break;
      case 'error':
        console.warn('subscription refused', message.payload);
        break;
      default:
        break;
    }
  });
  ws.addEventListener('close', () => {
    if (socket !== ws) return;
    socket = null;
    acked = false;
    if (stopped || !session()) {
      setStatus('off');
      return;
    }
    setStatus('connecting');
    if (!wasLive) {
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      for (const fn of refusedListeners) fn();
    }
    reconnectTimer = setTimeout(connect, backoff);
  });
}

/**
 * Tells `fn` each time a connection closes before the server accepted it (for instance because
 * the web session was closed elsewhere), so the page can check whether its token still holds.
 */
export function onRefused(fn) {
  refusedListeners.add(fn);
}

/** Opens the connection (after login). */
export function start() {
  stopped = false;
  if (!socket) connect();
}

/** Closes it (logout) and drops every subscription. */
export function stop() {
  stopped = true;
  clearTimeout(reconnectTimer);
  subscriptions.clear();
  if (socket) socket.close(1000, 'logout');
  socket = null;
  setStatus('off');
}

/**
 * Subscribes; `onData(data)` gets each event, `onReconnect()` is called each time the connection
 * is (re)established, so the page reloads what it may have missed. Returns the unsubscribe.
 */
export function subscribe(query, variables, onData, onReconnect) {
  const id = String(nextId++);
  const sub = { query, variables, onData, onReconnect };
  subscriptions.set(id, sub);
  if (acked) sendSubscribe(id, sub);
  return () => {
    if (subscriptions.delete(id) && acked) send({ id, type: 'complete' });
  };
}

/**
 * Wraps `fn` so that bursts of calls run it at most once per `ms`: at once when idle, and once
 * more at the end of a burst.
 */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0 && !timer) {
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, Math.max(wait, 0));
    }
  };
}
