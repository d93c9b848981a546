// Showing the API's validation errors at the field they name (the API's 400 messages
// start each problem with the field: "limit: more than 6 decimal places").

import { alertBox, clear } from '../dom.js';

export function clearErrors(form, status) {
  clear(status);
  for (const el of form.querySelectorAll('.field-error')) {
    el.hidden = true;
    el.textContent = '';
  }
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/** Put each named field's problem under it; anything else goes to the form's status. */
export function showErrors(form, status, error) {
  let first = null;
  const unplaced = [];
  for (const [name, problems] of error.fields) {
    const box = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (!box) {
      unplaced.push(...problems.map((p) => `${name}: ${p}`));
      continue;
    }
    const message = box.querySelector(':scope > .field-error');
    message.textContent = problems.join('; ');
    message.hidden = false;
    for (const control of box.querySelectorAll('input, select, textarea')) control.setAttribute('aria-invalid', 'true');
    first = first ?? box.querySelector('input, select, textarea');
  }
  if (error.fields.size === 0 || unplaced.length) {
    status.append(alertBox(unplaced.length && error.fields.size ? unplaced.join('; ') : error.message));
  } else {
    status.append(alertBox('Please correct the marked fields.'));
  }
  if (first) first.focus();
}
