// The console shell: sign-in, navigation (hash routes, so any static server works), pages.

import { api, ApiError, session, sso, whenSignedOut } from './api.js';
import { alertBox, clear, field, h } from './dom.js';
import * as audit from './pages/audit.js';
import * as budgets from './pages/budgets.js';
import * as config from './pages/config.js';
import * as keys from './pages/keys.js';
import * as models from './pages/models.js';
import * as overview from './pages/overview.js';
import * as playground from './pages/playground.js';
import * as requests from './pages/requests.js';

const PAGES = { overview, keys, config, budgets, requests, audit, playground, models };

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const sessionBox = document.getElementById('session');

// What the pages share within this tab, in memory only (never in storage).
const shared = { me: null, playgroundKey: null };
// Each navigation gets a number; a slow page that finishes after the next navigation began
// is dropped instead of replacing the newer page.
let navigation = 0;

function signInMessage(error) {
  if (error.status === 403) {
    return 'This is an inference key: it can call models but not the Management API. '
      + 'Sign in with a management key (tollway keys create --management, or create one on '
      + 'the API keys page of a management session).';
  }
  if (error.status === 401) return 'The gateway does not know this key: it is wrong or was deleted.';
  return error.message;
}

const SSO_ERRORS = {
  invalid_token: 'Single sign-on failed: the identity provider’s answer could not be verified.',
  unknown_user: 'Single sign-on worked, but this gateway has no user for you. Ask an operator to create it.',
  denied: 'The identity provider refused the sign-in.',
  bad_state: 'The sign-in expired or was started elsewhere. Start again.',
  issuer_error: 'The identity provider could not be reached. Try again later.',
};

function ssoBox() {
  if (!sso.state?.oidc) return '';
  return h('div', { class: 'card narrow', id: 'sso' },
    h('h2', null, 'Single sign-on'),
    h('p', null, 'Sign in with your organisation’s account; you see the projects you are a member of.'),
    h('a', { class: 'button', href: '/auth/oidc/login', id: 'sso-sign-in' }, 'Sign in with single sign-on'));
}

function renderSignIn(reason) {
  nav.hidden = true;
  sessionBox.hidden = true;
  const failed = new URLSearchParams(location.search).get('sso_error');
  if (failed && !reason) reason = SSO_ERRORS[failed] ?? 'Single sign-on failed.';
  const input = h('input', {
    type: 'password', name: 'key', autocomplete: 'off', spellcheck: 'false', required: true,
    placeholder: 'tw-…',
  });
  const status = h('div', { class: 'form-status' });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', null, 'Sign in'),
    h('p', null, 'Use a management key of your project. It is kept in this browser tab only, '
      + 'and forgotten when you sign out or close the tab.'),
    field('Management key', input),
    h('button', { type: 'submit' }, 'Sign in'),
    status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    clear(status);
    if (!key) {
      status.append(alertBox('Enter a management key.'));
      return;
    }
    try {
      const me = await api('/v1/manage/me', { key });
      session.signIn(key);
      shared.me = me;
      input.value = '';
      if (!location.hash || location.hash === '#/signin') location.hash = '#/overview';
      else route();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      status.append(alertBox(signInMessage(error)));
      input.focus();
    }
  });
  clear(main).append(reason ? alertBox(reason, 'info') : '', ssoBox(), form);
  input.focus();
}

async function signOut(reason) {
  navigation += 1; // a page still loading with the old key must not replace the sign-in
  session.signOut();
  shared.me = null;
  shared.playgroundKey = null;
  // The sign-in page shows once the gateway has ended the session: "signed out" is then true.
  await sso.signOut();
  renderSignIn(reason);
}

function projectPicker() {
  const projects = sso.state.projects;
  const select = h('select', { id: 'project', 'aria-label': 'Project' },
    projects.map((p) => h('option', { value: p.id, selected: p.id === sso.project }, `${p.name} (${p.role})`)));
  select.addEventListener('change', () => {
    sso.choose(select.value);
    shared.me = null;
    shared.playgroundKey = null;
    route();
  });
  return select;
}

function showSession(me) {
  nav.hidden = false;
  sessionBox.hidden = false;
  const who = document.getElementById('who');
  if (!session.key && sso.signedIn) {
    clear(who).append(`${me.user} · `, projectPicker(), h('span', { class: 'badge' }, 'single sign-on'));
  } else {
    who.textContent = `${me.user} · ${me.project} (${me.role ?? 'no role'})`;
  }
}

async function route() {
  navigation += 1;
  const current = navigation;
  if (!session.key && !sso.signedIn) {
    renderSignIn();
    return;
  }
  const [name, ...params] = location.hash.replace(/^#\/?/, '').split('/');
  const page = PAGES[name] ? name : 'overview';
  try {
    shared.me = shared.me ?? await api('/v1/manage/me');
    if (current !== navigation) return;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      signOut(signInMessage(error));
      return;
    }
    clear(main).append(alertBox(error.message));
    return;
  }
  showSession(shared.me);
  for (const link of nav.querySelectorAll('a')) {
    if (link.getAttribute('href') === `#/${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const ctx = { me: shared.me, shared, params: params.map(decodeURIComponent) };
  const placeholder = h('p', { class: 'loading', role: 'status' }, 'Loading…');
  clear(main).append(placeholder);
  main.setAttribute('aria-busy', 'true');
  try {
    const view = await PAGES[page].render(ctx);
    if (current !== navigation) return;
    clear(main).append(view);
  } catch (error) {
    if (current !== navigation) return;
    if (!(error instanceof ApiError)) throw error;
    clear(main).append(alertBox(error.message));
  } finally {
    if (current === navigation) main.removeAttribute('aria-busy');
  }
  const heading = main.querySelector('h1');
  document.title = `${heading ? heading.textContent : 'Console'} · Tollway`;
  main.focus({ preventScroll: true });
}

document.getElementById('sign-out').addEventListener('click', () => signOut('You are signed out.'));
whenSignedOut(() => signOut(session.key
  ? 'Your key stopped working (deleted?). Sign in again.'
  : 'Your session has ended. Sign in again.'));
window.addEventListener('hashchange', route);
sso.load().then(() => {
  if (sso.signedIn && location.search) history.replaceState(null, '', location.pathname + location.hash);
  route();
});
