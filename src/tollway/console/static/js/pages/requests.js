// Requests: the request log with filters and paging, and one request's detail with its
// attempts and routing trace. Without the request-log API (404) the page says so.

import { api, ApiError, query } from '../api.js';
import { alertBox, field, h, table } from '../dom.js';
import { count, eur, ms, when } from '../format.js';
import { localInputToIso, pagedLog } from '../paged.js';
import { candidatesTable } from './playground.js';

const STATUSES = ['success', 'client_disconnected', 'upstream_error', 'refused', 'error'];

function unavailable() {
  return h('section', { 'aria-labelledby': 'requests-title' },
    h('h1', { id: 'requests-title' }, 'Requests'),
    h('div', { class: 'card empty-state', id: 'log-unavailable' },
      h('h2', null, 'Request log not available'),
      h('p', null, 'This gateway does not offer the request log API (GET /v1/manage/requests answered 404). '
        + 'Usage totals are on the Overview page.')));
}

function statusBadge(status) {
  return h('span', { class: `badge ${status === 'success' ? 'success' : 'failed'}` }, status);
}

function filterForm(models, providers, values, onApply) {
  const control = (name, el) => {
    el.name = name;
    el.value = values[name] ?? '';
    return el;
  };
  const from = control('from', h('input', { type: 'datetime-local' }));
  const until = control('until', h('input', { type: 'datetime-local' }));
  const options = (list) => [h('option', { value: '' }, 'Any'), list.map((v) => h('option', { value: v }, v))];
  const model = control('model', h('select', null, options(models)));
  const provider = control('provider', h('select', null, options(providers)));
  const status = control('status', h('select', null, options(STATUSES)));
  const keyName = control('key_name', h('input', { type: 'text', autocomplete: 'off' }));
  const form = h('form', { class: 'card filters', novalidate: true, 'aria-label': 'Filters' },
    h('div', { class: 'form-row' },
      field('From (UTC)', from), field('Until (UTC)', until), field('Model', model),
      field('Provider', provider), field('Status', status), field('Key name', keyName)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply filters'),
      h('button', { type: 'reset', class: 'secondary' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    onApply({ from: from.value, until: until.value, model: model.value, provider: provider.value, status: status.value, key_name: keyName.value.trim() });
  });
  form.addEventListener('reset', () => setTimeout(() => onApply({}), 0));
  return form;
}

async function listView(ctx) {
  const catalogue = await api('/v1/manage/models');
  const models = catalogue.models.map((m) => m.id);
  const providers = catalogue.providers.map((p) => p.slug);
  const results = h('div', { class: 'card' });
  const more = h('div', { class: 'actions' });
  let filters = {};

  const columns = [
    { label: 'Time', cell: (r) => h('a', { href: `#/requests/${encodeURIComponent(r.request_id)}` }, when(r.created_at)) },
    { label: 'Model', cell: (r) => h('span', { class: 'mono' }, r.model) },
    { label: 'Provider', cell: (r) => r.provider ?? '—' },
    { label: 'Status', cell: (r) => statusBadge(r.status) },
    { label: 'Stream', cell: (r) => (r.stream ? 'yes' : 'no') },
    { label: 'Key', cell: (r) => r.key_name },
    { label: 'Tokens', cell: (r) => count(r.total_tokens), class: 'num' },
    { label: 'Cached', cell: (r) => count(r.cached_prompt_tokens), class: 'num' },
    { label: 'Reasoning', cell: (r) => count(r.reasoning_tokens), class: 'num' },
    { label: 'Cost', cell: (r) => eur(r.cost), class: 'num' },
    { label: 'Latency', cell: (r) => ms(r.latency_ms), class: 'num' },
  ];
  const log = pagedLog(results, more, {
    url: (cursor) => `/v1/manage/requests${query({
      ...filters, from: localInputToIso(filters.from), until: localInputToIso(filters.until), limit: 50, cursor,
    })}`,
    items: 'requests',
    caption: 'Requests',
    heading: 'Log',
    empty: 'No requests match.',
    columns,
    rowAttrs: (r) => ({ 'data-request-id': r.request_id }),
  });
  const apply = async (values) => {
    filters = values;
    await log.apply();
  };
  await log.first();
  return h('section', { 'aria-labelledby': 'requests-title' },
    h('h1', { id: 'requests-title' }, 'Requests'),
    h('p', { class: 'lead' }, `What this gateway served for ${ctx.me.role === 'admin' ? 'the whole project' : 'you'}: no prompt or completion text is kept.`),
    filterForm(models, providers, filters, apply),
    results, more);
}

// Prompt tokens include the cached and cache-written ones; completion tokens the reasoning.
function tokenClasses(r) {
  const prompt = [];
  if (r.cached_prompt_tokens) prompt.push(`${count(r.cached_prompt_tokens)} cached`);
  if (r.cache_write_tokens) prompt.push(`${count(r.cache_write_tokens)} written to cache`);
  const inPart = `${count(r.prompt_tokens)} in${prompt.length ? ` (${prompt.join(', ')})` : ''}`;
  const reasoning = r.reasoning_tokens ? ` (${count(r.reasoning_tokens)} reasoning)` : '';
  return `${inPart}, ${count(r.completion_tokens)} out${reasoning}${r.usage_source ? `, ${r.usage_source}` : ''}`;
}

function detailView(r) {
  const routing = r.routing;
  return h('section', { 'aria-labelledby': 'request-title' },
    h('p', null, h('a', { href: '#/requests' }, '← All requests')),
    h('h1', { id: 'request-title' }, 'Request ', h('span', { class: 'mono' }, r.request_id)),
    h('div', { class: 'card' },
      h('dl', { class: 'facts' },
        h('dt', null, 'Time'), h('dd', null, when(r.created_at)),
        h('dt', null, 'Status'), h('dd', null, statusBadge(r.status), ` HTTP ${r.http_status}`),
        h('dt', null, 'Endpoint'), h('dd', { class: 'mono' }, r.endpoint, r.stream ? ' (stream)' : ''),
        h('dt', null, 'Model'), h('dd', null, r.model, r.served_model && r.served_model !== r.model ? ` → served by ${r.served_model}` : ''),
        h('dt', null, 'Provider'), h('dd', { id: 'detail-provider' }, r.provider ?? '—'),
        h('dt', null, 'Key'), h('dd', null, r.key_name),
        h('dt', null, 'Tokens'), h('dd', { id: 'detail-tokens' }, tokenClasses(r)),
        h('dt', null, 'Cost'), h('dd', null, eur(r.cost)),
        h('dt', null, 'Latency'), h('dd', null, `${ms(r.latency_ms)}${r.ttft_ms !== null && r.ttft_ms !== undefined ? `, first token ${ms(r.ttft_ms)}` : ''}`),
        r.translation ? [
          h('dt', null, 'Translated'), h('dd', { id: 'detail-translated' }, r.translation.translated.join(', ') || '—'),
          h('dt', null, 'Dropped'), h('dd', { id: 'detail-dropped' }, r.translation.dropped.join(', ') || '—'),
        ] : null,
        r.error ? [h('dt', null, 'Error'), h('dd', null, r.error)] : null)),
    h('div', { class: 'card', id: 'attempts' },
      h('h2', null, 'Attempts'),
      table('Attempts in order', [
        { label: '#', cell: (a) => String(r.attempts.indexOf(a) + 1), class: 'num' },
        { label: 'Provider', cell: (a) => a.provider },
        { label: 'Model', cell: (a) => a.model },
        { label: 'Status', cell: (a) => statusBadge(a.status) },
        { label: 'Error', cell: (a) => a.error ?? '' },
      ], r.attempts)),
    routing ? h('div', { class: 'card', id: 'trace' },
      h('h2', null, 'Routing trace'),
      h('dl', { class: 'facts' },
        h('dt', null, 'Preference'), h('dd', null, routing.preference),
        h('dt', null, 'Applied filters'), h('dd', null, routing.applied_filters.length ? routing.applied_filters.join('; ') : 'none'),
        h('dt', null, 'Initial candidates'), h('dd', null, routing.routing_trace.initial_candidates.join(', ')),
        h('dt', null, 'Fallback chain'), h('dd', null, routing.fallback_chain.join(' → ') || '—')),
      candidatesTable(routing.routing_trace)) : null);
}

export async function render(ctx) {
  try {
    if (ctx.params[0]) return detailView(await api(`/v1/manage/requests/${encodeURIComponent(ctx.params[0])}`));
    return await listView(ctx);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      if (!ctx.params[0]) return unavailable();
      // A detail 404 is either an unknown id or no log API at all: ask the list.
      const list = await api('/v1/manage/requests?limit=1').catch((e) => e);
      if (list instanceof ApiError && list.status === 404) return unavailable();
      return h('section', null, h('h1', null, 'Request not found'), alertBox(error.message),
        h('p', null, h('a', { href: '#/requests' }, '← All requests')));
    }
    throw error;
  }
}
