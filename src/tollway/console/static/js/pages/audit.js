// Audit: who changed what in this project (every change for an admin, your own for a
// member), with filters and paging; each entry opens to its fields before and after.

import { query } from '../api.js';
import { field, h } from '../dom.js';
import { when } from '../format.js';
import { localInputToIso, pagedLog } from '../paged.js';

function actorText(actor) {
  return `${actor.name} (${actor.kind})`;
}

function changes(entry) {
  const show = (value) => (value === null || value === undefined ? '—' : JSON.stringify(value, null, 2));
  return h('details', null,
    h('summary', null, 'Before / after'),
    h('div', { class: 'audit-change' },
      h('div', null, h('h3', null, 'Before'), h('pre', { class: 'mono' }, show(entry.before))),
      h('div', null, h('h3', null, 'After'), h('pre', { class: 'mono' }, show(entry.after)))));
}

function filterForm(onApply) {
  const action = h('input', { type: 'text', name: 'action', autocomplete: 'off', placeholder: 'api_key.create' });
  const actor = h('input', { type: 'text', name: 'actor', autocomplete: 'off' });
  const since = h('input', { type: 'datetime-local', name: 'since' });
  const until = h('input', { type: 'datetime-local', name: 'until' });
  const form = h('form', { class: 'card filters', novalidate: true, 'aria-label': 'Audit filters' },
    h('div', { class: 'form-row' },
      field('Action', action), field('Actor', actor), field('Since (UTC)', since), field('Until (UTC)', until)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply filters'),
      h('button', { type: 'reset', class: 'secondary' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    onApply({
      action: action.value.trim(), actor: actor.value.trim(),
      since: localInputToIso(since.value), until: localInputToIso(until.value),
    });
  });
  form.addEventListener('reset', () => setTimeout(() => onApply({}), 0));
  return form;
}

export async function render(ctx) {
  const results = h('div', { class: 'card', id: 'audit-log' });
  const more = h('div', { class: 'actions' });
  let filters = {};
  const columns = [
    { label: 'Time', cell: (e) => when(e.created_at) },
    { label: 'Actor', cell: (e) => actorText(e.actor) },
    { label: 'Action', cell: (e) => h('span', { class: 'mono' }, e.action) },
    { label: 'Target', cell: (e) => h('span', { class: 'mono' }, e.target) },
    { label: 'Change', cell: (e) => changes(e) },
  ];
  const log = pagedLog(results, more, {
    url: (cursor) => `/v1/manage/audit${query({ ...filters, limit: 50, cursor })}`,
    items: 'entries',
    caption: 'Audit log',
    heading: 'Changes',
    empty: 'No changes match.',
    columns,
    rowAttrs: (e) => ({ 'data-audit-id': e.id }),
  });
  const apply = async (values) => {
    filters = values;
    await log.apply();
  };
  await log.first();
  return h('section', { 'aria-labelledby': 'audit-title' },
    h('h1', { id: 'audit-title' }, 'Audit log'),
    h('p', { class: 'lead' }, ctx.me.role === 'admin'
      ? 'Every change made to this project: who, what, when, and the fields before and after.'
      : 'The changes you made in this project. A project admin sees everyone’s.'),
    filterForm(apply),
    results, more);
}
