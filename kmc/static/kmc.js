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
