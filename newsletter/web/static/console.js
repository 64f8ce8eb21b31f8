// The console's own script: small conveniences over pages that work without it.
// (No inline script anywhere: the CSP allows scripts from this origin only.)
document.addEventListener("DOMContentLoaded", function () {
  // A button that stays disabled until a field holds the text it asks for (typing a list's name to send).
  document.querySelectorAll("input[data-must-equal]").forEach(function (input) {
    var button = document.getElementById(input.getAttribute("data-enables"));
    if (!button) return;
    var update = function () { button.disabled = input.value.trim() !== input.getAttribute("data-must-equal"); };
    input.addEventListener("input", update);
    update();
  });
  // "Select all" for bulk actions on a table of people.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name='" + all.getAttribute("data-select-all") + "']").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
});
