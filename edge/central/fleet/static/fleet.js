// Fleet view: small conveniences on top of a page that works without JavaScript.
// - filters apply as soon as a select or checkbox changes (the form is a plain GET form);
// - "/" focuses the search box;
// - pages marked data-refresh reload every N seconds, unless the user is typing.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  if (form) {
    form.querySelectorAll("select, input[type=checkbox]").forEach(function (el) {
      el.addEventListener("change", function () { form.submit(); });
    });
  }
  var q = document.getElementById("q");
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "/" && q && document.activeElement !== q) {
      ev.preventDefault();
      q.focus();
    }
  });
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    setInterval(function () {
      var a = document.activeElement;
      var typing = a && (a.tagName === "INPUT" || a.tagName === "SELECT");
      if (!typing && !document.hidden) { window.location.reload(); }
    }, every * 1000);
  }
})();
