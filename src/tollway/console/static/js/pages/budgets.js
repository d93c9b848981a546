// Budgets: list with progress in the current window, create, delete (project admins).

import { api, ApiError } from '../api.js';
import { alertBox, clear, confirmDialog, field, h, table, toast } from '../dom.js';
import { eur, when } from '../format.js';
import { clearErrors, showErrors } from './forms.js';

const SCOPES = {
  project: 'The whole project',
  each_user: 'Each user',
  user: 'One user',
  each_key: 'Each API key',
  key: 'One API key',
};
const PERIODS = { daily: 'Daily (resets 00:00 UTC)', weekly: 'Weekly (Monday 00:00 UTC)', monthly: 'Monthly (the 1st, 00:00 UTC)' };

function subject(budget) {
  if (budget.scope === 'user') return `user ${budget.user_id}`;
  if (budget.scope === 'key') return `key ${budget.key_name}`;
  return SCOPES[budget.scope];
}

function used(budget) {
  // For "each" scopes the window is per subject: show the one closest to its limit.
  const subjects = budget.subjects.length ? budget.subjects : [{ spent: budget.spent, reserved: budget.reserved }];
  return Math.max(0, ...subjects.map((s) => s.spent + s.reserved));
}

export function progress(budget) {
  const spent = used(budget);
  const left = Math.max(budget.limit - spent, 0);
  const ratio = budget.limit > 0 ? Math.min(spent / budget.limit, 1) : 1;
  const level = ratio >= 0.9 ? 'high' : ratio >= 0.7 ? 'mid' : 'low';
  return h('div', { class: 'progress-cell' },
    h('progress', { max: 1000, value: Math.round(ratio * 1000), class: level, 'aria-label': `${subject(budget)}: ${Math.round(ratio * 100)} % used` }),
    h('span', { class: 'progress-text' }, `${eur(spent)} of ${eur(budget.limit)} · ${eur(left)} left`));
}

export function budgetTable(budgets, onDelete) {
  const columns = [
    { label: 'Scope', cell: subject },
    { label: 'Period', cell: (b) => b.period },
    { label: 'Used in this window', cell: progress },
    { label: 'Resets', cell: (b) => when(b.resets_at) },
  ];
  if (onDelete) {
    columns.push({
      label: 'Actions',
      cell: (b) => h('button', { type: 'button', class: 'danger small', onclick: () => onDelete(b), 'aria-label': `Delete budget ${subject(b)} ${b.period}` }, 'Delete'),
    });
  }
  return table('Budgets', columns, budgets, (b) => ({ 'data-budget-id': b.id }));
}

function createForm(keys, onCreated) {
  const scope = h('select', { name: 'scope' }, Object.entries(SCOPES).map(([v, t]) => h('option', { value: v }, t)));
  const period = h('select', { name: 'period' }, Object.entries(PERIODS).map(([v, t]) => h('option', { value: v }, t)));
  const limit = h('input', { name: 'limit', type: 'text', inputmode: 'decimal', required: true, placeholder: '10.00', autocomplete: 'off' });
  const userId = h('input', { name: 'user_id', type: 'text', autocomplete: 'off', placeholder: 'default: you' });
  const keyName = h('select', { name: 'key_name' }, keys.map((k) => h('option', { value: k.name }, k.name)));
  const userField = field('User id', userId, 'For “one user”: the user’s id (leave empty for yourself).');
  const keyField = field('API key', keyName);
  const status = h('div', { class: 'form-status' });
  const sync = () => {
    userField.hidden = scope.value !== 'user';
    keyField.hidden = scope.value !== 'key';
  };
  scope.addEventListener('change', sync);
  sync();
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'new-budget' },
    h('h2', { id: 'new-budget' }, 'New budget'),
    h('div', { class: 'form-row' }, field('Applies to', scope), field('Period', period), field('Limit (EUR)', limit)),
    h('div', { class: 'form-row' }, userField, keyField),
    h('button', { type: 'submit' }, 'Create budget'),
    status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form, status);
    const body = { scope: scope.value, period: period.value, limit: limit.value.trim() };
    if (scope.value === 'user' && userId.value.trim()) body.user_id = userId.value.trim();
    if (scope.value === 'key') body.key_name = keyName.value;
    try {
      await api('/v1/manage/budgets', { method: 'POST', body: budgetJson(body) });
      toast('Budget created');
      onCreated();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showErrors(form, status, error);
    }
  });
  return form;
}

// The limit is a JSON number, written exactly as typed: a decimal through a JS number could
// lose digits. Anything else goes as a string, and the gateway's 400 names `limit`.
function budgetJson(body) {
  const text = JSON.stringify(body);
  if (!/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(body.limit)) return text;
  return text.replace(`"limit":${JSON.stringify(body.limit)}`, `"limit":${body.limit}`);
}

export async function render(ctx) {
  const root = h('section', { 'aria-labelledby': 'budgets-title' });
  if (ctx.me.role !== 'admin') {
    root.append(h('h1', { id: 'budgets-title' }, 'Budgets'),
      alertBox('Budgets are managed by project admins; your role in this project is member.', 'info'));
    return root;
  }
  const [list, keys] = await Promise.all([api('/v1/manage/budgets'), api('/v1/manage/api-keys')]);
  const listBox = h('div', { class: 'card' });
  const refresh = async () => {
    const fresh = await api('/v1/manage/budgets');
    fill(fresh.budgets);
  };
  const remove = async (budget) => {
    const ok = await confirmDialog('Delete this budget?',
      `${subject(budget)}, ${budget.period}, limit ${eur(budget.limit)}. Requests will no longer be held to it.`, 'Delete budget');
    if (!ok) return;
    try {
      await api('/v1/manage/budgets', { method: 'DELETE', body: { id: budget.id } });
      toast('Budget deleted');
      await refresh();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      listBox.prepend(alertBox(error.message));
    }
  };
  const fill = (budgets) => {
    clear(listBox).append(h('h2', null, 'Budgets of this project'),
      budgets.length ? budgetTable(budgets, remove) : h('p', { class: 'empty' }, 'No budgets yet.'));
  };
  fill(list.budgets);
  const ours = keys.api_keys;
  root.append(h('h1', { id: 'budgets-title' }, 'Budgets'),
    h('p', { class: 'lead' }, 'Limits in EUR per period. Several may apply to one request; all must hold, or the request is refused with 429.'),
    listBox,
    createForm(ours, refresh));
  return root;
}
