// Formatting and small DOM helpers. Data reaches the page only through textContent, never as
// markup.

/** A clone of a <template>'s content. */
export function fromTemplate(id) {
  return document.getElementById(id).content.cloneNode(true);
}

/** An element with text and attributes. */
export function el(tag, text = '', attrs = {}) {
  const node = document.createElement(tag);
  if (text !== '') node.textContent = text;
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'className') node.className = v;
    else node.setAttribute(k, v);
  }
  return node;
}

/** A table row of cells; a cell is text or a node. Cells named in `numeric` align right. */
export function row(cells, numeric = []) {
  const tr = document.createElement('tr');
  cells.forEach((cell, i) => {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell ?? '';
    if (numeric.includes(i)) td.className = 'num';
    tr.append(td);
  });
  return tr;
}

export function showError(node, error) {
  node.textContent = error ? (error.message || String(error)) : '';
  node.hidden = !error;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Octets as a short size: 1.5 MiB. */
export function bytes(n) {
  if (n === null || n === undefined) return '';
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/** Seconds as 2d 03h, 1h 05m, 4m 09s, 12s. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '';
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (x) => String(x).padStart(2, '0');
  if (d > 0) return `${d}d ${pad(h)}h`;
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(s % 60)}s`;
  return `${s}s`;
}

/** RFC 3339 as the browser's local date and time. */
export function time(rfc3339) {
  if (!rfc3339) return '';
  const t = new Date(rfc3339);
  return Number.isNaN(t.getTime()) ? rfc3339 : t.toLocaleString();
}

/** Seconds a session lasted: to its stop, or to now while it is open. */
export function sessionSeconds(s, now = Date.now()) {
  if (!s.startTime) return s.sessionTime ?? null;
  const start = Date.parse(s.startTime);
  const end = s.stopTime ? Date.parse(s.stopTime) : now;
  return (end - start) / 1000;
}

/** The query part of the location hash (#/page?a=1) as URLSearchParams. */
export function hashParams() {
  const i = location.hash.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : location.hash.slice(i + 1));
}

/** Replaces the hash's query part without a new history entry or a page change. */
export function setHashParams(params) {
  const base = location.hash.split('?')[0] || '#/';
  const q = params.toString();
  history.replaceState(null, '', q ? `${base}?${q}` : base);
}

/** Asks for confirmation in the page's dialog; resolves true or false. */
export function confirmAction(text, okLabel) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = okLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.removeEventListener('click', yes);
      cancel.removeEventListener('click', no);
      dialog.removeEventListener('cancel', no);
      dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener('click', yes);
    cancel.addEventListener('click', no);
    dialog.addEventListener('cancel', no);
    dialog.showModal();
    cancel.focus();
  });
}
