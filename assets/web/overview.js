// Overview: online sessions per NAS (`onlineCountsByNas`), kept current by the every-user
// `sessionEvents` subscription: a start or a stop reloads the counts (at most once a second
// in a burst); interim updates change no count and are ignored.

import { graphql } from './api.js';
import { subscribe, throttle } from './live.js';
import { el, fromTemplate, row } from './format.js';

const COUNTS = 'query Counts { onlineCountsByNas { nasIpAddress online } }';
const EVENTS = 'subscription AllEvents { sessionEvents { kind } }';

export function mount(main) {
  main.append(fromTemplate('tpl-overview'));
  document.title = 'Overview · radacctd';
  const rows = document.getElementById('overview-rows');
  const total = document.getElementById('overview-total');
  const empty = document.getElementById('overview-empty');
  let alive = true;

  async function load() {
    let counts;
    try {
      counts = (await graphql(COUNTS)).onlineCountsByNas;
    } catch (e) {
      if (alive) total.textContent = `unavailable (${e.message})`;
      return;
    }
    if (!alive) return;
    rows.replaceChildren(
      ...counts.map((c) => {
        const link = el('a', c.nasIpAddress, {
          href: `#/sessions?nas=${encodeURIComponent(c.nasIpAddress)}`,
        });
        const tr = row([link, String(c.online)], [1]);
        tr.dataset.nas = c.nasIpAddress;
        return tr;
      }),
    );
    total.textContent = String(counts.reduce((sum, c) => sum + c.online, 0));
    empty.hidden = counts.length > 0;
  }

  const reload = throttle(load, 1000);
  const unsubscribe = subscribe(
    EVENTS,
    {},
    (data) => {
      if (data.sessionEvents.kind !== 'UPDATE') reload();
    },
    reload,
  );
  load();
  return () => {
    alive = false;
    unsubscribe();
  };
}
