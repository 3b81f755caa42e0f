// The KMC's only script (no inline script, so the CSP can be strict).
// A form with data-confirm asks before it is sent; the message names the consequence.
// A form with data-confirm-typed="VALUE" is sent only when its [name=confirm] field holds VALUE
// (the server checks the same field).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var message = form.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

// A form sent after the session expired comes back after login: the server puts what it held
// (never passwords, shares or typed confirmations) in <meta name="kmc-resume">, and this fills
// the form with the same action in again, for the person to check and send.
document.addEventListener("DOMContentLoaded", function () {
  var meta = document.querySelector('meta[name="kmc-resume"]');
  if (!meta) {
    return;
  }
  var kept = JSON.parse(meta.getAttribute("content"));
  var forms = Array.prototype.filter.call(document.forms, function (form) {
    return new URL(form.action, document.baseURI).pathname === kept.action;
  });
  var values = {};
  kept.fields.forEach(function (pair) {
    (values[pair[0]] = values[pair[0]] || []).push(pair[1]);
  });
  forms.forEach(function (form) {
    Object.keys(values).forEach(function (name) {
      var field = form.elements.namedItem(name);
      if (!field || field.type === "password" || field.type === "file" || field.type === "hidden") {
        return;
      }
      if (field.tagName === "SELECT" && field.multiple) {
        Array.prototype.forEach.call(field.options, function (option) {
          option.selected = values[name].indexOf(option.value) !== -1;
        });
      } else if (field.type === "checkbox") {
        field.checked = values[name].indexOf(field.value) !== -1;
      } else {
        field.value = values[name][0];  // a text field, a select, or a group of radio buttons
      }
    });
  });
});
