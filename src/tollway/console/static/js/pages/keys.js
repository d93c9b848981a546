// API keys: list, create (the secret is shown once, with a copy button), delete with
// confirmation. The key this session signed in with cannot be deleted: the API says why.

import { api, ApiError } from '../api.js';
import { alertBox, clear, confirmDialog, field, h, table, toast } from '../dom.js';
import { when } from '../format.js';
import { clearErrors, showErrors } from './forms.js';

async function copy(text, input) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (a plain-http origin other than localhost): select it for Ctrl+C.
    input.select();
    toast('Press Ctrl+C to copy the selected key');
    return;
  }
  toast('Key copied');
}

function revealed(created, shared, onDone) {
  const input = h('input', { type: 'text', readonly: true, value: created.api_key, class: 'mono', name: 'new_key', spellcheck: 'false' });
  const box = h('div', { class: 'card reveal', role: 'region', 'aria-labelledby': 'reveal-title' },
    h('h2', { id: 'reveal-title' }, `Key “${created.name}” created`),
    h('p', null, h('strong', null, 'Copy it now: '), 'it is shown only this once and cannot be retrieved later.'),
    field('New API key', input),
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => copy(created.api_key, input) }, 'Copy key'),
      h('button', {
        type: 'button', class: 'secondary',
        onclick: () => {
          shared.playgroundKey = { name: created.name, key: created.api_key };
          location.hash = '#/playground';
        },
      }, 'Try it in the playground'),
      h('button', { type: 'button', class: 'secondary', onclick: onDone }, 'Done')));
  return box;
}

export async function render(ctx) {
  const root = h('section', { 'aria-labelledby': 'keys-title' });
  const listBox = h('div', { class: 'card' });
  const revealBox = h('div');
  const listStatus = h('div', { class: 'form-status' });

  const remove = async (key) => {
    const ok = await confirmDialog(`Delete key “${key.name}”?`,
      'Requests with this key stop working at once, on every replica. Its budgets are deleted too. This cannot be undone.',
      'Delete key');
    if (!ok) return;
    clear(listStatus);
    try {
      await api('/v1/manage/api-keys', { method: 'DELETE', body: { name: key.name } });
      toast(`Key “${key.name}” deleted`);
      await refresh();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      listStatus.append(alertBox(`Could not delete “${key.name}”: ${error.message.replace(/^name: /, '')}`));
    }
  };

  const fill = (keys) => {
    clear(listBox).append(h('h2', null, 'Your keys'), listStatus,
      table('Your API keys', [
        { label: 'Name', cell: (k) => [h('span', { class: 'mono' }, k.name), k.name === ctx.me.key_name ? h('span', { class: 'badge' }, 'this session') : null] },
        { label: 'Type', cell: (k) => (k.is_management_key ? 'Management' : 'Inference') },
        { label: 'Created', cell: (k) => when(k.created_at) },
        { label: 'Actions', cell: (k) => h('button', { type: 'button', class: 'danger small', onclick: () => remove(k), 'aria-label': `Delete key ${k.name}` }, 'Delete') },
      ], keys, (k) => ({ 'data-key': k.name })));
  };
  const refresh = async () => fill((await api('/v1/manage/api-keys')).api_keys);

  const name = h('input', { name: 'name', type: 'text', required: true, maxlength: 64, autocomplete: 'off', pattern: '[A-Za-z0-9._\\-]+' });
  const management = h('input', { name: 'is_management_key', type: 'checkbox' });
  const status = h('div', { class: 'form-status' });
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'new-key' },
    h('h2', { id: 'new-key' }, 'New key'),
    h('div', { class: 'form-row' },
      field('Name', name, '1–64 characters: letters, digits, “.”, “_”, “-”; unique among your keys.'),
      field('Management key (may also manage keys, configuration and budgets)', management)),
    h('button', { type: 'submit' }, 'Create key'),
    status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form, status);
    try {
      const created = await api('/v1/manage/api-keys', {
        method: 'POST', body: { name: name.value.trim(), is_management_key: management.checked },
      });
      form.reset();
      clear(revealBox).append(revealed(created, ctx.shared, () => clear(revealBox)));
      revealBox.querySelector('input').focus();
      await refresh();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showErrors(form, status, error);
    }
  });

  await refresh();
  root.append(h('h1', { id: 'keys-title' }, 'API keys'),
    h('p', { class: 'lead' }, 'Keys act as you in the project of the key that created them. Inference keys call models; management keys also manage this project.'),
    revealBox, form, listBox);
  return root;
}
