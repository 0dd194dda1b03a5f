/* murmur web: the page's only script (no inline script anywhere: the CSP forbids it).
 *
 * - Sends the page's CSRF token (from <meta name="csrf-token">) with every htmx
 *   request, in the X-CSRF-Token header the server checks.
 * - On the home page, follows /live/timeline (Server-Sent Events) from the stream
 *   cursors the page was read at, and shows "N new posts — show" as they come; on
 *   the notifications page, the same with /live/notifications (one function, the
 *   banner's data- attributes say which).
 * - In a compose form, Ctrl+Enter (Cmd+Enter) posts (the submit button works without it).
 */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  /* A live banner (the home page's, the notifications page's): follows its stream
   * (data-stream, Server-Sent Events named data-event) from the stream cursors the
   * page was read at, counts the new ids and shows "N new posts — show". */
  function followLive(live) {
    if (typeof window.EventSource !== "function") {
      return;
    }
    var url = live.dataset.stream + "?from=" + encodeURIComponent(live.dataset.from || "") +
      "&seen=" + encodeURIComponent(live.dataset.seen || "");
    var fresh = new Set();
    var source = new EventSource(url);
    source.addEventListener(live.dataset.event, function (message) {
      var doc;
      try {
        doc = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      (doc.ids || []).forEach(function (id) { fresh.add(String(id)); });
      if (fresh.size > 0) {
        live.querySelector(".live-count").textContent = String(fresh.size);
        live.querySelector(".live-noun").textContent =
          fresh.size === 1 ? live.dataset.one : live.dataset.many;
        live.hidden = false;
      }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  /* Compose: Ctrl+Enter (Cmd+Enter) in the text posts, as the submit button does. */
  function submitOnCtrlEnter() {
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || !target ||
          target.name !== "text" || !target.form || !target.form.classList.contains("compose")) {
        return;
      }
      event.preventDefault();
      if (typeof target.form.requestSubmit === "function") {
        target.form.requestSubmit();
      } else {
        target.form.submit();
      }
    });
  }

  function start() {
    document.querySelectorAll(".live[data-stream]").forEach(followLive);
    submitOnCtrlEnter();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
