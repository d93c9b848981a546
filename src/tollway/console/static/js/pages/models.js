// Models: the registry with prices and flags, and this replica's live speed and circuit state
// per endpoint (each replica measures for itself).

import { api } from '../api.js';
import { clear, h, table } from '../dom.js';
import { count, eur, ms } from '../format.js';

const CIRCUIT = { closed: 'healthy', open: 'circuit open', half_open: 'half open (next request is a trial)' };

function yesNo(value) {
  return value ? 'yes' : 'no';
}

function modelCard(m) {
  return h('div', { class: 'card', 'data-model': m.id },
    h('h2', null, h('span', { class: 'mono' }, m.id), ' ', h('span', { class: 'badge' }, m.kind)),
    h('p', null, m.description),
    h('p', { class: 'hint' },
      `Context ${count(m.context_size)} tokens`,
      m.tags.length ? ` · tags: ${m.tags.join(', ')}` : '',
      m.fallback.length ? ` · falls back to ${m.fallback.join(', ')}` : ''),
    table(`Endpoints of ${m.id}`, [
      { label: 'Provider', cell: (e) => h('span', { title: e.provider_name }, e.provider) },
      { label: 'Upstream model', cell: (e) => h('span', { class: 'mono' }, e.upstream_model) },
      { label: 'Input / 1M', cell: (e) => eur(e.pricing.input_token), class: 'num' },
      { label: 'Cached input / 1M', cell: (e) => eur(e.pricing.cached_input_token), class: 'num' },
      { label: 'Cache write / 1M', cell: (e) => eur(e.pricing.cache_write_token), class: 'num' },
      { label: 'Output / 1M', cell: (e) => eur(e.pricing.output_token), class: 'num' },
      { label: 'EU-native', cell: (e) => yesNo(e.eu_native) },
      { label: 'ZDR', cell: (e) => yesNo(e.zero_data_retention) },
      { label: 'Quantization', cell: (e) => e.quantization ?? 'none' },
      { label: 'TTFT', cell: (e) => ms(e.ttft_ms), class: 'num' },
      { label: 'Tokens/s', cell: (e) => count(Math.round(e.tokens_per_second)), class: 'num' },
      { label: 'Samples', cell: (e) => (e.samples ? count(e.samples) : 'hint only'), class: 'num' },
      { label: 'Health', cell: (e) => h('span', { class: `badge circuit-${e.circuit}` }, CIRCUIT[e.circuit] ?? e.circuit, e.consecutive_failures ? ` · ${e.consecutive_failures} failures in a row` : '') },
    ], m.endpoints, (e) => ({ 'data-endpoint': `${m.id}@${e.provider}` })));
}

export async function render() {
  const list = h('div');
  const fill = (catalogue) => clear(list).append(...catalogue.models.map(modelCard));
  fill(await api('/v1/manage/models'));
  const refresh = h('button', { type: 'button', class: 'secondary', onclick: async () => fill(await api('/v1/manage/models')) }, 'Refresh');
  return h('section', { 'aria-labelledby': 'models-title' },
    h('div', { class: 'title-row' }, h('h1', { id: 'models-title' }, 'Models'), refresh),
    h('p', { class: 'lead' }, 'Prices are EUR per million tokens. Speed is what this gateway process has measured (exponentially weighted); before any traffic, the registry’s hints.'),
    list);
}
