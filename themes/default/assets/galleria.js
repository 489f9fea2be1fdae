/* galleria default theme: theme toggle, keyboard navigation, grid sort/filter.
   Plain ES5-ish vanilla JS, no dependencies, safe on every page (guards for missing
   elements) and from file:// (storage access is wrapped in try/catch).
   Loaded synchronously in <head> so the stored colour theme applies before first paint. */
(function () {
  "use strict";

  var root = document.documentElement;
  var THEME_KEY = "galleria-theme";

  function load(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function save(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* storage unavailable */ }
  }

  // ---------------------------------------------------------------- colour theme (before paint)
  var stored = load(THEME_KEY);
  if (stored === "light" || stored === "dark") {
    root.setAttribute("data-theme", stored);
  }

  function systemDark() {
    return !!(window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches);
  }
  function currentTheme() {
    var t = root.getAttribute("data-theme");
    if (t === "light" || t === "dark") return t;
    return systemDark() ? "dark" : "light";
  }

  function initThemeToggle() {
    var button = document.querySelector("[data-theme-toggle]");
    if (!button) return;
    function sync() {
      var dark = currentTheme() === "dark";
      button.setAttribute("aria-pressed", dark ? "true" : "false");
      button.title = dark ? "Switch to light mode" : "Switch to dark mode";
    }
    button.hidden = false;
    sync();
    button.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      // Back to "follow the system" when the choice matches the system anyway.
      if ((next === "dark") === systemDark()) {
        root.removeAttribute("data-theme");
        try { window.localStorage.removeItem(THEME_KEY); } catch (e) { /* ignore */ }
      } else {
        root.setAttribute("data-theme", next);
        save(THEME_KEY, next);
      }
      sync();
    });
  }

  // ---------------------------------------------------------------- keyboard navigation
  function isTyping(el) {
    if (!el) return false;
    var tag = (el.tagName || "").toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || el.isContentEditable;
  }

  function relHref(rel) {
    var link = document.querySelector('link[rel="' + rel + '"]');
    return link ? link.href : null;
  }

  function initKeys() {
    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
      var target = event.target;
      if (isTyping(target)) {
        if (event.key === "Escape" && target.matches && target.matches("[data-filter]")) {
          target.value = "";
          target.dispatchEvent(new Event("input", { bubbles: true }));
          target.blur();
        }
        return;
      }
      if (event.key === "/") {
        var filter = document.querySelector("[data-grid-tools]:not([hidden]) [data-filter]");
        if (filter) {
          event.preventDefault();
          filter.focus();
        }
        return;
      }
      if (event.shiftKey) return;
      var rel = null;
      if (event.key === "ArrowLeft") rel = "prev";
      else if (event.key === "ArrowRight") rel = "next";
      else if (event.key === "u" || event.key === "U") rel = "up";
      if (!rel) return;
      var href = relHref(rel);
      if (href) {
        event.preventDefault();
        window.location.href = href;
      }
    });
  }

  // ---------------------------------------------------------------- grid sort / filter
  function num(el, name) {
    var v = parseFloat(el.getAttribute("data-" + name));
    return isNaN(v) ? null : v;
  }

  function initGrid(tools) {
    var grid = document.getElementById(tools.getAttribute("data-grid-tools"));
    if (!grid) return;
    var items = Array.prototype.slice.call(grid.children);
    var filterBox = tools.querySelector("[data-filter]");
    var sortBox = tools.querySelector("[data-sort]");
    var countOut = tools.querySelector("[data-count]");
    var empty = grid.parentNode ? grid.parentNode.querySelector("[data-grid-empty]") : null;
    var noun = countOut ? countOut.textContent.replace(/^[\d,\s]+/, "") : "";
    var total = items.length;
    var texts = items.map(function (el) {
      return (el.getAttribute("data-search") || "").toLowerCase();
    });
    var ids = items.map(function (el) { return num(el, "id"); });

    function applyFilter() {
      var q = filterBox ? filterBox.value.trim().toLowerCase() : "";
      var idQuery = /^#?\d+$/.test(q) ? parseInt(q.replace("#", ""), 10) : null;
      var terms = q ? q.split(/\s+/) : [];
      var shown = 0;
      for (var i = 0; i < items.length; i++) {
        var ok;
        if (!q) ok = true;
        else if (idQuery !== null) ok = (ids[i] !== null && ids[i] === idQuery) || texts[i].indexOf(q) !== -1;
        else ok = terms.every(function (t) { return texts[i].indexOf(t) !== -1; });
        items[i].hidden = !ok;
        if (ok) shown++;
      }
      if (countOut) {
        countOut.textContent = (shown === total ? total.toLocaleString("en-US") : shown.toLocaleString("en-US") + " of " + total.toLocaleString("en-US")) + " " + noun;
      }
      if (empty) empty.hidden = shown !== 0;
    }

    function applySort() {
      if (!sortBox) return;
      var key = sortBox.value || "id";
      var desc = key.charAt(0) === "-";
      var field = desc ? key.slice(1) : key;
      var order = items.map(function (el, i) {
        return { el: el, v: num(el, field), id: ids[i] === null ? i : ids[i] };
      });
      order.sort(function (a, b) {
        if (a.v === null && b.v !== null) return 1; // missing values last either way
        if (b.v === null && a.v !== null) return -1;
        if (a.v !== b.v && a.v !== null) return desc ? b.v - a.v : a.v - b.v;
        return a.id - b.id;
      });
      var frag = document.createDocumentFragment();
      order.forEach(function (o) { frag.appendChild(o.el); });
      grid.appendChild(frag);
    }

    if (filterBox) filterBox.addEventListener("input", applyFilter);
    if (sortBox) sortBox.addEventListener("change", applySort);
    tools.hidden = false;
    // Restore controls the browser kept (back/forward cache, form restoration).
    if (sortBox && sortBox.value && sortBox.value !== "id") applySort();
    if (filterBox && filterBox.value) applyFilter();
  }

  // Layer grids: show each unit's feature visualization instead of its top example; remembered.
  function initVizToggle(box) {
    var grid = document.getElementById(box.getAttribute("data-viz-toggle"));
    if (!grid) return;
    function apply() { grid.classList.toggle("show-viz", box.checked); }
    box.checked = load("galleria-viz") === "1";
    apply();
    box.addEventListener("change", function () { save("galleria-viz", box.checked ? "1" : "0"); apply(); });
  }

  // Text examples: "whole window" draws the example's full window, coloured, from the page's
  // #tx-windows data (pieces already have their whitespace drawn); without JS it links to the input.
  function initWindows(data) {
    var windows;
    try { windows = JSON.parse(data.textContent); } catch (e) { return; }
    var links = document.querySelectorAll("[data-window]");
    for (var i = 0; i < links.length; i++) {
      links[i].addEventListener("click", function (event) {
        var link = event.currentTarget;
        var shown = link.parentNode.querySelector(".tx-window");
        event.preventDefault();
        if (shown) {
          shown.parentNode.removeChild(shown);
          link.textContent = "whole window";
          return;
        }
        var w = windows[link.getAttribute("data-window")];
        if (!w) return;
        var pre = document.createElement("pre");
        pre.className = "tx-ctx tx-window";
        for (var k = 0; k < w.p.length; k++) {
          var step = Math.max(-8, Math.min(8, Math.round(w.v[k] / windows.scale * 8))) || 0;
          var span = document.createElement("span");
          span.className = "t " + (step > 0 ? "p" + step : step < 0 ? "n" + (-step) : "z") +
            (/^[\u00b7\u2192\u21b5\s]+$/.test(w.p[k]) ? " ws" : "") + (k === w.at ? " x" : "");
          span.title = String(w.v[k]);
          span.textContent = w.p[k];
          pre.appendChild(span);
        }
        link.parentNode.appendChild(pre);
        link.textContent = "hide window";
      });
    }
  }

  function init() {
    initThemeToggle();
    initKeys();
    var data = document.getElementById("tx-windows");
    if (data) initWindows(data);
    var toggles = document.querySelectorAll("[data-viz-toggle]");
    for (var j = 0; j < toggles.length; j++) initVizToggle(toggles[j]);
    var tools = document.querySelectorAll("[data-grid-tools]");
    for (var i = 0; i < tools.length; i++) initGrid(tools[i]);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
