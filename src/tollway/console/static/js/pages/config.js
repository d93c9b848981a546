// Project configuration: the whole routing policy as one form. Admins edit; members read
// (or edit, while the project allows overwrites). The API's 400s are shown at the field.

import { api, ApiError } from '../api.js';
import { alertBox, field, h, toast, uniqueId } from '../dom.js';
import { when } from '../format.js';
import { clearErrors, showErrors } from './forms.js';

const PREFERENCES = {
  balanced: 'Balanced — a blend of price and measured speed',
  cost: 'Cost — the cheapest endpoint first',
  speed: 'Speed — the best measured latency first',
};

const SWITCHES = [
  ['eu_native', 'EU-native providers only', 'Only providers based and regulated in the EU.'],
  ['allow_zero_data_retention', 'Zero data retention only', 'Only providers that keep no prompts or completions.'],
  ['allow_quantization', 'Allow quantized endpoints', 'Off: quantized (e.g. fp8) endpoints are never used.'],
  ['enable_model_fallback', 'Model fallback', 'When every provider of a model fails, try its fallback models.'],
  ['include_metadata', 'Include routing metadata in responses', 'Adds the provider choice, cost and routing trace to every response.'],
];

function group(name, legend, controls, hint) {
  const errorId = uniqueId('err');
  return h('fieldset', { 'data-field': name, 'aria-describedby': errorId },
    h('legend', null, legend),
    hint ? h('p', { class: 'hint' }, hint) : null,
    controls,
    h('p', { class: 'field-error', id: errorId, hidden: true }));
}

function radio(name, value, label, checked) {
  const input = h('input', { type: 'radio', name, value, checked });
  return field(label, input);
}

function flags(p) {
  return [p.eu_native ? 'EU' : 'non-EU', p.zero_data_retention ? 'ZDR' : null].filter(Boolean).join(', ');
}

function readOnlyReason(me, config) {
  if (me.role === 'admin') return null;
  if (config.allow_overwrite) return null;
  return 'You can read this configuration; only project admins can change it while “allow overwrite” is off.';
}

export async function render(ctx) {
  const [config, catalogue] = await Promise.all([api('/v1/project-configs'), api('/v1/manage/models')]);
  const ic = config.inference_config;
  const isAdmin = ctx.me.role === 'admin';
  const reason = readOnlyReason(ctx.me, config);

  const active = h('input', { type: 'checkbox', name: 'active', checked: config.active });
  const overwrite = h('input', { type: 'checkbox', name: 'allow_overwrite', checked: config.allow_overwrite, disabled: !isAdmin });
  const allMode = h('input', { type: 'radio', name: 'providers_mode', value: 'all', checked: ic.allowed_providers === null });
  const someMode = h('input', { type: 'radio', name: 'providers_mode', value: 'some', checked: ic.allowed_providers !== null });
  const providerBoxes = catalogue.providers.map((p) => h('input', {
    type: 'checkbox', name: 'allowed_provider', value: p.slug,
    checked: (ic.allowed_providers || []).includes(p.slug),
  }));
  const providerList = h('div', { class: 'choices' }, providerBoxes.map((box, i) => {
    const p = catalogue.providers[i];
    return field(`${p.slug} — ${p.name} (${flags(p)})`, box);
  }));
  const syncProviders = () => {
    for (const box of providerBoxes) box.disabled = allMode.checked || Boolean(reason);
  };
  allMode.addEventListener('change', syncProviders);
  someMode.addEventListener('change', syncProviders);
  const switches = Object.fromEntries(SWITCHES.map(([name]) => [name, h('input', { type: 'checkbox', name, checked: ic[name] })]));
  const blacklist = h('input', { type: 'text', name: 'blacklisted_models', value: ic.blacklisted_models.join(', '), autocomplete: 'off', spellcheck: 'false' });
  const status = h('div', { class: 'form-status' });
  const updated = h('p', { class: 'hint' }, `Last changed ${when(config.updated_at)}.`);

  const body = h('fieldset', { class: 'plain', disabled: Boolean(reason) },
    h('legend', { class: 'visually-hidden' }, 'Routing policy'),
    h('div', { class: 'card' },
      h('h2', null, 'Status'),
      field('Active — apply this configuration to every request of the project', active,
        'Off: requests get the defaults plus their own router fields.'),
      field('Allow overwrite — requests may replace these settings with their own router fields', overwrite,
        isAdmin ? 'Off: a request may only tighten the policy.' : 'Only admins may change this.')),
    h('div', { class: 'card' },
      h('h2', null, 'Routing'),
      group('preference', 'Preference', Object.entries(PREFERENCES).map(([value, label]) => radio('preference', value, label, ic.preference === value))),
      group('allowed_providers', 'Allowed providers', [
        field('All providers of the registry', allMode),
        field('Only these providers:', someMode),
        providerList,
      ])),
    h('div', { class: 'card' },
      h('h2', null, 'Filters'),
      SWITCHES.map(([name, label, hint]) => field(label, switches[name], hint)),
      field('Blacklisted models', blacklist,
        `Model ids never served for this project, separated by commas. Known: ${catalogue.models.map((m) => m.id).join(', ')}.`)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save configuration')));

  const form = h('form', { novalidate: true, 'aria-labelledby': 'config-title' }, body, status);
  syncProviders();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form, status);
    const inference = {
      preference: form.querySelector('input[name="preference"]:checked').value,
      allowed_providers: allMode.checked ? null : providerBoxes.filter((b) => b.checked).map((b) => b.value),
      blacklisted_models: blacklist.value.split(/[\s,]+/).filter(Boolean),
    };
    for (const [name] of SWITCHES) inference[name] = switches[name].checked;
    const payload = { active: active.checked, inference_config: inference };
    if (isAdmin) payload.allow_overwrite = overwrite.checked;
    try {
      await api('/v1/project-configs', { method: 'PUT', body: payload });
      const fresh = await api('/v1/project-configs');
      updated.textContent = `Last changed ${when(fresh.updated_at)}.`;
      status.append(alertBox('Saved. New requests follow this policy.', 'success'));
      toast('Configuration saved');
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showErrors(form, status, error);
    }
  });

  return h('section', { 'aria-labelledby': 'config-title' },
    h('h1', { id: 'config-title' }, 'Project configuration'),
    h('p', { class: 'lead' }, `The routing policy of project ${ctx.me.project}: which providers and models may serve its requests, and how they are ranked.`),
    reason ? alertBox(reason, 'info') : null,
    updated,
    form);
}
