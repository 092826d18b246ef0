// tocsin browser snippet: report front-end events and uncaught errors to tocsin.
//
// Uses a *publishable* key (scope events:browser) — it is visible to anyone who opens the
// page, so give it only the kinds it needs (allowed_kinds) and your site's origins
// (allowed_origins). tocsin caps severity, removes chat mentions and rate-limits per IP/key.
//
//   <script src="/tocsin.js"></script>
//   <script>
//     Tocsin.init({ url: "https://tocsin.example.com", key: "pk_live_…" });
//     Tocsin.send({ kind: "ui.checkout_abandoned", title: "Checkout abandoned", fields: { step: "payment" } });
//   </script>
(function (global) {
  "use strict";
  var config = null;
  var sentErrors = 0;
  var MAX_ERRORS_PER_PAGE = 10; // stay well under the server's rate limits

  function post(events) {
    if (!config) return;
    var body = JSON.stringify(events.length === 1 ? events[0] : { events: events });
    // keepalive lets the request finish while the page unloads; bodies stay small (≤16 KiB).
    return fetch(config.url.replace(/\/$/, "") + "/api/v1/browser/events", {
      method: "POST",
      mode: "cors",
      keepalive: body.length < 60000,
      headers: { "Content-Type": "application/json", "X-Tocsin-Key": config.key },
      body: body,
    }).catch(function () { /* never break the page over monitoring */ });
  }

  // Stack frames in tocsin's error form (innermost first), from a JS Error's stack text.
  function frames(error) {
    var lines = String((error && error.stack) || "").split("\n");
    var out = [];
    for (var i = 0; i < lines.length && out.length < 30; i++) {
      // Chrome: "    at fn (https://app/x.js:10:5)"; Firefox/Safari: "fn@https://app/x.js:10:5"
      var m = /at (?:(.+?) \()?(.+?):(\d+):\d+\)?$/.exec(lines[i]) || /^(.*?)@(.+?):(\d+):\d+$/.exec(lines[i]);
      if (!m) continue;
      out.push({
        function: m[1] || "?",
        filename: m[2],
        lineno: parseInt(m[3], 10),
        in_app: m[2].indexOf(location.origin) === 0,
      });
    }
    return out;
  }

  function reportError(error, message) {
    if (sentErrors++ >= MAX_ERRORS_PER_PAGE) return;
    post([{
      kind: "error.js",
      severity: "error", // tocsin lowers it to the browser cap (warning by default)
      error: {
        type: (error && error.name) || "Error",
        message: String((error && error.message) || message || "unknown error").slice(0, 2000),
        frames: frames(error),
        // The route groups errors of one page; never send cookies or tokens from here.
        request: { method: "GET", url: location.href, route: config.route ? config.route() : location.pathname },
      },
      labels: config.release ? { release: config.release } : {},
    }]);
  }

  global.Tocsin = {
    // options: url (tocsin base URL), key (publishable key), release (optional),
    // route (optional function returning the route pattern, e.g. "/orders/:id").
    init: function (options) {
      config = options;
      global.addEventListener("error", function (e) { reportError(e.error, e.message); });
      global.addEventListener("unhandledrejection", function (e) {
        reportError(e.reason instanceof Error ? e.reason : null, String(e.reason));
      });
    },
    // event: { kind, severity?, title?, text?, user?, labels?, fields?, fingerprint?, link? }
    send: function (event) { return post([event]); },
  };
})(window);
