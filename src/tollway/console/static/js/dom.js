// Building DOM from elements and text nodes, never from HTML strings: nothing from the API can inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'style') {
      throw new Error('inline styles are not allowed by the Content-Security-Policy');
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h('button', {type: 'button', onclick}, 'Save') */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element: svg('rect', {x: 0, y: 0, width: 4, height: 4}) */
export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function uniqueId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form control with a place for its error message (aria-describedby). */
export function field(label, control, hint) {
  const id = control.id || uniqueId('f');
  control.id = id;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  control.setAttribute('aria-describedby', [hintId, errorId].filter(Boolean).join(' '));
  const isCheck = control.type === 'checkbox' || control.type === 'radio';
  const labelEl = h('label', { for: id }, label);
  const name = control.type === 'radio' ? null : control.name || null;
  return h('div', { class: isCheck ? 'field check' : 'field', 'data-field': name },
    isCheck ? [control, labelEl] : [labelEl, control],
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    h('p', { class: 'field-error', id: errorId, hidden: true }));
}

/** A table: columns = [{label, cell: row => node|string, class?}] */
export function table(caption, columns, rows, rowProps) {
  return h('div', { class: 'table-wrap' },
    h('table', null,
      h('caption', { class: caption.visible ? null : 'visually-hidden' }, caption.text ?? caption),
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
      h('tbody', null, rows.map((row) => h('tr', rowProps ? rowProps(row) : null,
        columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(row))))))));
}

/** A modal confirmation; resolves true when confirmed. Keyboard: Escape cancels. */
export function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const titleId = uniqueId('dlg');
    const dialog = h('dialog', { 'aria-labelledby': titleId },
      h('h2', { id: titleId }, title),
      h('p', null, text),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', value: 'cancel', onclick: () => dialog.close('cancel') }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', value: 'ok', onclick: () => dialog.close('ok') }, confirmLabel)));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'ok');
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function alertBox(message, kind = 'error') {
  return h('div', { class: `alert ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
}

export function toast(message) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove('shown'), 3000);
}
