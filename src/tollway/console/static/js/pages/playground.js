// Playground: pick a model and router fields, send a chat, watch the reply stream in, and
// see which provider served it, what it cost, and how the router decided.

import { api, session } from '../api.js';
import { alertBox, clear, field, h, table } from '../dom.js';
import { eur, ms } from '../format.js';
import { sseData } from '../sse.js';

const TRI = [['', 'Project setting'], ['true', 'Yes'], ['false', 'No']];

function tri(name) {
  return h('select', { name }, TRI.map(([v, t]) => h('option', { value: v }, t)));
}

function routingView(meta, chunk) {
  const results = meta.routing_results;
  const trace = meta.routing_trace;
  return h('div', { class: 'card', id: 'routing' },
    h('h2', null, 'Routing'),
    h('dl', { class: 'facts' },
      h('dt', null, 'Provider'), h('dd', { id: 'served-provider' }, results.selected_provider),
      h('dt', null, 'Model'), h('dd', null, meta.model_used, meta.fallback_from ? ` (fallback from ${meta.fallback_from})` : ''),
      h('dt', null, 'Cost'), h('dd', { id: 'served-cost' }, eur(results.cost.total_cost)),
      h('dt', null, 'Latency'), h('dd', null, ms(results.latency_ms)),
      h('dt', null, 'Tokens'), h('dd', null, chunk.usage ? `${chunk.usage.prompt_tokens} in, ${chunk.usage.completion_tokens} out (${results.usage_source ?? 'upstream'})` : '—'),
      h('dt', null, 'Applied filters'), h('dd', null, results.applied_filters.length ? results.applied_filters.join('; ') : 'none'),
      h('dt', null, 'Scoring'), h('dd', null, `${trace.scoring_function.function} (${trace.scoring_function.sort})`)),
    candidatesTable(trace));
}

export function candidatesTable(trace) {
  return h('div', null,
    table({ text: 'Scored candidates', visible: true }, [
      { label: 'Provider', cell: (c) => c.provider },
      { label: 'Model', cell: (c) => c.model ?? '' },
      { label: 'Score', cell: (c) => (typeof c.score === 'number' ? c.score.toFixed(3) : String(c.score)) },
      { label: 'Status', cell: (c) => h('span', { class: `badge ${c.status}` }, c.status) },
      { label: 'Error', cell: (c) => c.error ?? '' },
    ], trace.scored_candidates),
    trace.filtered_out_candidates.length
      ? table({ text: 'Filtered out', visible: true }, [
        { label: 'Provider', cell: (c) => c.provider },
        { label: 'Filter', cell: (c) => c.filter_failed },
        { label: 'Reason', cell: (c) => c.reason },
      ], trace.filtered_out_candidates)
      : null);
}

export async function render(ctx) {
  const catalogue = await api('/v1/manage/models');
  const chatModels = catalogue.models.filter((m) => m.kind === 'chat');
  const model = h('select', { name: 'model' }, chatModels.map((m) => h('option', { value: m.id }, m.id)));
  const prompt = h('textarea', { name: 'prompt', rows: 3, required: true }, 'Say hello in three languages.');
  const preference = h('select', { name: 'preference' }, [['', 'Project setting'], ['balanced', 'Balanced'], ['cost', 'Cost'], ['speed', 'Speed']].map(([v, t]) => h('option', { value: v }, t)));
  const providers = catalogue.providers.map((p) => h('input', { type: 'checkbox', name: 'allowed_providers', value: p.slug }));
  const euNative = tri('eu_native');
  const quant = tri('allow_quantization');
  const zdr = tri('allow_zero_data_retention');
  const fallback = tri('enable_model_fallback');
  const maxTokens = h('input', { type: 'number', name: 'max_tokens', min: 1, value: 128, inputmode: 'numeric' });
  const chosen = ctx.shared.playgroundKey;
  const keyChoice = h('select', { name: 'key_choice' },
    session.key ? h('option', { value: 'session' }, `This session’s key (${ctx.me.key_name})`) : null,
    chosen ? h('option', { value: 'new', selected: true }, `The new key “${chosen.name}”`) : null,
    h('option', { value: 'other' }, 'Another key…'));
  const otherKey = h('input', { type: 'password', name: 'other_key', autocomplete: 'off', placeholder: 'tw-…' });
  const otherField = field('API key to use', otherKey, 'Used for this chat only; never stored.');
  const syncKey = () => { otherField.hidden = keyChoice.value !== 'other'; };
  keyChoice.addEventListener('change', syncKey);
  syncKey();

  const reply = h('div', { class: 'reply', id: 'reply', role: 'log', 'aria-live': 'off', 'aria-label': 'Reply' });
  const status = h('p', { class: 'stream-status', role: 'status', 'aria-live': 'polite' });
  const details = h('div');
  const send = h('button', { type: 'submit' }, 'Send');
  const stop = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Stop');
  let controller = null;
  stop.addEventListener('click', () => controller?.abort());

  const bearer = () => {
    if (keyChoice.value === 'new' && chosen) return chosen.key;
    if (keyChoice.value === 'other') return otherKey.value.trim();
    return session.key;
  };

  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'pg-form' },
    h('h2', { id: 'pg-form' }, 'Request'),
    h('div', { class: 'form-row' }, field('Model', model), field('Max tokens', maxTokens), field('Send with', keyChoice)),
    otherField,
    field('Message', prompt),
    h('details', null, h('summary', null, 'Router fields (override or tighten the project policy)'),
      h('div', { class: 'form-row' }, field('Preference', preference), field('EU-native only', euNative), field('Allow quantization', quant)),
      h('div', { class: 'form-row' }, field('Zero data retention only', zdr), field('Model fallback', fallback)),
      h('fieldset', null, h('legend', null, 'Allowed providers (none ticked: the project setting)'),
        h('div', { class: 'choices' }, providers.map((box) => field(box.value, box))))),
    h('div', { class: 'actions' }, send, stop));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = bearer();
    clear(reply);
    clear(details);
    if (!key) {
      details.append(alertBox('Enter the API key to use.'));
      return;
    }
    const body = {
      model: model.value,
      messages: [{ role: 'user', content: prompt.value }],
      stream: true,
      stream_options: { include_usage: true },
      include_metadata: true,
      max_tokens: Number(maxTokens.value) || undefined,
    };
    if (preference.value) body.preference = preference.value;
    for (const [select, name] of [[euNative, 'eu_native'], [quant, 'allow_quantization'], [zdr, 'allow_zero_data_retention'], [fallback, 'enable_model_fallback']]) {
      if (select.value) body[name] = select.value === 'true';
    }
    const ticked = providers.filter((b) => b.checked).map((b) => b.value);
    if (ticked.length) body.allowed_providers = ticked;

    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    reply.setAttribute('aria-busy', 'true');
    status.textContent = 'Waiting for the first token…';
    const started = performance.now();
    let final = null;
    let firstToken = null;
    try {
      const response = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        signal: controller.signal,
      });
      if (!response.ok) {
        const data = await response.json().catch(() => null);
        throw new Error(data?.error?.message ?? `HTTP ${response.status}`);
      }
      for await (const data of sseData(response.body)) {
        if (data === '[DONE]') break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message ?? 'the stream failed');
        const text = chunk.choices?.[0]?.delta?.content;
        if (text) {
          if (firstToken === null) {
            firstToken = performance.now() - started;
            status.textContent = 'Streaming…';
          }
          reply.append(text);
        }
        if (chunk.metadata || chunk.usage) final = { ...final, ...chunk };
      }
      status.textContent = `Done in ${ms(performance.now() - started)} (first token after ${ms(firstToken)}).`;
      if (final?.metadata) details.append(routingView(final.metadata, final));
      else if (final?.provider) details.append(h('p', null, `Served by ${final.provider}.`));
    } catch (error) {
      status.textContent = error.name === 'AbortError' ? 'Stopped.' : 'Failed.';
      if (error.name !== 'AbortError') details.append(alertBox(error.message));
    } finally {
      send.disabled = false;
      stop.disabled = true;
      reply.removeAttribute('aria-busy');
      controller = null;
    }
  });

  return h('section', { 'aria-labelledby': 'pg-title' },
    h('h1', { id: 'pg-title' }, 'Playground'),
    h('p', { class: 'lead' }, 'A streamed chat through this gateway, billed like any other request, with the routing metadata of its final chunk.'),
    form,
    h('div', { class: 'card' }, h('h2', null, 'Reply'), status, reply),
    details);
}
