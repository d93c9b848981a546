// A log page's table with "Load more" paging (the request log and the audit log share it),
// and the filters' datetime-local values read as UTC.

import { ApiError, api } from './api.js';
import { alertBox, clear, h, table } from './dom.js';

/** A datetime-local value ("2026-11-26T10:00", seconds optional), read as UTC. */
export function localInputToIso(value) {
  if (!value) return '';
  const date = new Date(`${value.length === 16 ? `${value}:00` : value}Z`);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

/**
 * Fills `results` with the first page of `log.url(cursor)` and `more` with a "Load more"
 * button while there is a next page. `log` = {url, items, caption, heading, empty, columns,
 * rowAttrs}. Returns `apply()`: reload from the first page, an API refusal shown in place.
 */
export function pagedLog(results, more, log) {
  const load = async (cursor) => {
    const page = await api(log.url(cursor));
    const items = page[log.items];
    const body = table(log.caption, log.columns, items, log.rowAttrs);
    if (!cursor) clear(results).append(h('h2', null, log.heading), items.length ? body : h('p', { class: 'empty' }, log.empty));
    else results.querySelector('tbody').append(...body.querySelectorAll('tbody tr'));
    clear(more);
    if (page.next_cursor) more.append(h('button', { type: 'button', class: 'secondary', onclick: () => load(page.next_cursor) }, 'Load more'));
  };
  const first = () => load(null);
  const apply = async () => {
    try {
      await first();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      clear(results).append(alertBox(error.message));
    }
  };
  return { first, apply };
}
