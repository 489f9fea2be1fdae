/* galleria default theme: theme toggle, keyboard navigation, grid sort/filter, site search.
   Plain ES5-ish vanilla JS, no dependencies, safe on every page (guards for missing
   elements) and from file:// (storage access is wrapped in try/catch).
   Loaded synchronously in <head> so the stored colour theme applies before first paint. */
(function () {
  "use strict";

  var root = document.documentElement;
  var THEME_KEY = "galleria-theme";
  // In a notebook's output (galleria.Gallery) the script (marked data-view) draws its own view only,
  // the element it is in, leaving the notebook's theme, keys and links alone.
  var current = document.currentScript, view = current && current.hasAttribute("data-view") ? current.parentNode : null;

  function load(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function save(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* storage unavailable */ }
  }

  // ---------------------------------------------------------------- colour theme (before paint)
  var stored = view ? null : load(THEME_KEY);
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

  function relHref(rel) {  // the pager's links
    var link = document.querySelector('a[rel="' + rel + '"]');
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
        var box = document.getElementById("search-box");
        if (box) {
          event.preventDefault();
          box.focus();
          if (box.select) box.select();
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

  function initGrid(tools, scope) {  // scope: where the grid is (a notebook may show several with one id)
    var grid = scope.querySelector('[id="' + tools.getAttribute("data-grid-tools") + '"]');
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

  // ---------------------------------------------------------------- heat over image tiles
  // A tile's <i data-h="cols rows levels"> becomes a canvas of cols x rows pixels, one
  // per cell of the unit's map over the tile, which the browser stretches and smooths. Levels are
  // characters of HEAT (level / 63 of the unit's scale); colour from the inferno map, opacity rising
  // to 0.65, as galleria's own tiles.py draws them for link-preview cards.
  var HEAT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  var INFERNO = [[0, 0, 4], [11, 7, 36], [33, 12, 74], [61, 9, 101], [87, 16, 110], [113, 25, 110], [138, 34, 106],
    [163, 44, 97], [188, 55, 84], [210, 70, 68], [228, 90, 49], [241, 115, 29], [249, 142, 9], [252, 172, 17],
    [249, 203, 53], [242, 234, 105], [252, 255, 164]];  // tiles.py's _INFERNO, in 8 bits
  var LUT = (function () {  // 256 colours, linear between INFERNO's entries at 0, 16, ..., 240, 255
    var at = [0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 255], out = [];
    for (var v = 0, k = 0; v < 256; v++) {
      while (k < at.length - 2 && v > at[k + 1]) k++;
      var t = (v - at[k]) / (at[k + 1] - at[k]), a = INFERNO[k], b = INFERNO[k + 1];
      out.push([Math.round(a[0] + (b[0] - a[0]) * t), Math.round(a[1] + (b[1] - a[1]) * t),
        Math.round(a[2] + (b[2] - a[2]) * t)]);
    }
    return out;
  })();

  // Levels come packed: "~" and a character of RUN_COUNTS repeat the level before it 1 to 62 times more.
  var RUN_COUNTS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

  function unpack(code) {
    var out = [], last = "";
    for (var i = 0; i < code.length; i++) {
      var c = code.charAt(i);
      if (c === "~") {
        for (var n = RUN_COUNTS.indexOf(code.charAt(++i)) + 1; n > 0; n--) out.push(last);
      } else {
        out.push(c);
        last = c;
      }
    }
    return out.join("");
  }

  function drawHeat(el) {
    var parts = (el.getAttribute("data-h") || "").split(" ");
    var cols = parseInt(parts[0], 10), rows = parseInt(parts[1], 10), levels = unpack(parts[2] || "");
    if (!cols || !rows || levels.length !== cols * rows) return;
    var canvas = document.createElement("canvas");
    canvas.width = cols;
    canvas.height = rows;
    canvas.className = "heat";
    var ctx = canvas.getContext && canvas.getContext("2d");
    if (!ctx) return;
    var image = ctx.createImageData(cols, rows), data = image.data;
    for (var i = 0; i < levels.length; i++) {
      var strength = HEAT.indexOf(levels.charAt(i)) / 63, colour = LUT[Math.round(strength * 255)];
      data[4 * i] = colour[0];
      data[4 * i + 1] = colour[1];
      data[4 * i + 2] = colour[2];
      data[4 * i + 3] = Math.round(strength * 0.65 * 255);
    }
    ctx.putImageData(image, 0, 0);
    canvas.style.cssText = el.style.cssText;  // where the grid lies on the tile, when it overhangs it
    el.parentNode.replaceChild(canvas, el);
  }

  // Heat is drawn as tiles come near the screen: a layer grid holds thousands.
  function initHeat(scope) {
    var all = scope.querySelectorAll("i[data-h]");
    if (!all.length) return;
    if (!("IntersectionObserver" in window)) {
      for (var i = 0; i < all.length; i++) drawHeat(all[i]);
      return;
    }
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (!entry.isIntersecting) return;
        observer.unobserve(entry.target);
        drawHeat(entry.target);
      });
    }, { rootMargin: "400px" });
    for (var j = 0; j < all.length; j++) observer.observe(all[j]);
  }

  // ---------------------------------------------------------------- data scripts
  // thumbs.js and the text shards are scripts that call back into the page (fetch() is refused
  // from file://): each is loaded once, and what waits for it runs when its callback says so.
  var scriptWaiting = {};

  function whenLoaded(src, key, callback) {
    if (!scriptWaiting[key]) {
      scriptWaiting[key] = [];
      var script = document.createElement("script");
      script.src = src;
      script.async = true;
      document.head.appendChild(script);
    }
    scriptWaiting[key].push(callback);
  }

  function scriptLoaded(key) {
    var waiting = scriptWaiting[key] || [];
    delete scriptWaiting[key];
    waiting.forEach(function (callback) { callback(); });
  }

  // ---------------------------------------------------------------- unit thumbnails
  // Links to units (a.u) get a thumbnail of the unit's top example from its layer's thumbs.js,
  // written once per layer: galleriaThumbs(images, {unit: [image, width, left, top, window w, h]}),
  // image paths relative to the script, numbers in % of the tile.
  var thumbTables = {};
  window.galleriaThumbs = function (images, units) {
    var src = document.currentScript && document.currentScript.src;
    if (!src) return;
    thumbTables[src] = { images: images, units: units };
    scriptLoaded("thumbs " + src);
  };

  function addThumb(link, table, src) {  // table: the layer's, or null once thumbTables holds it
    table = table || thumbTables[src];
    var unit = /\/([^\/]+)\/index\.html$/.exec(link.pathname || "");
    var entry = unit && table.units[unit[1]];
    if (!entry || link.querySelector(".tile")) return;
    var tile = document.createElement("span"), img = document.createElement("img"), holder = tile;
    tile.className = "tile";
    if (entry.length > 4) {
      holder = document.createElement("span");
      holder.className = "win";
      holder.style.width = entry[4] + "%";
      holder.style.height = entry[5] + "%";
      tile.appendChild(holder);
    }
    img.src = new URL(table.images[entry[0]], src).href;
    img.alt = "";
    img.loading = "lazy";
    img.style.width = entry[1] + "%";
    img.style.left = entry[2] + "%";
    img.style.top = entry[3] + "%";
    holder.appendChild(img);
    link.insertBefore(tile, link.firstChild);
  }

  function thumbFor(link) {
    var src = new URL("../thumbs.js", link.href).href;
    if (thumbTables[src]) addThumb(link, thumbTables[src], src);
    else whenLoaded(src, "thumbs " + src, addThumb.bind(null, link, null, src));
  }

  function initThumbs() {
    var links = document.querySelectorAll("a.u");
    for (var i = 0; i < links.length; i++) thumbFor(links[i]);
  }

  // ---------------------------------------------------------------- related units
  // A unit page's <div class="related" data-unit="N"> is drawn from its layer's
  // related.js, written once per layer: galleriaRelated(kinds [{layer, href, method}],
  // {unit: per kind [[unit, value], ...]}, {"layer/unit": label}), hrefs relative to the script.
  var relatedTables = {};
  window.galleriaRelated = function (kinds, units, labels) {
    var src = document.currentScript && document.currentScript.src;
    if (!src) return;
    relatedTables[src] = { kinds: kinds, units: units, labels: labels };
    scriptLoaded("related " + src);
  };

  function element(tag, className, text) {
    var made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined) made.textContent = text;
    return made;
  }

  function drawRelated(box, src) {
    var table = relatedTables[src], rows = table.units[box.getAttribute("data-unit")];
    if (!rows) return;
    var thumbs = box.hasAttribute("data-thumbs");
    table.kinds.forEach(function (kind, k) {
      if (!rows[k] || !rows[k].length) return;
      var head = element("p", "k", "related in "), layer = element("a", "", kind.layer);
      layer.href = new URL(kind.href + "index.html", src).href;
      head.appendChild(layer);
      var list = element("ul", "chips");
      list.setAttribute("role", "list");
      rows[k].forEach(function (pair) {
        var item = element("li", "chip " + (pair[1] < 0 ? "down" : "up")), link = element("a", thumbs ? "u" : "");
        var label = table.labels[kind.layer + "/" + pair[0]], name = element("span", "", String(pair[0]));
        link.href = new URL(kind.href + pair[0] + "/index.html", src).href;
        if (label) {
          link.title = label;
          name.appendChild(document.createTextNode(" "));
          name.appendChild(element("span", "unit-label", label));
        }
        link.appendChild(name);
        link.appendChild(document.createTextNode(" "));
        link.appendChild(element("span", "v", String(pair[1])));
        item.appendChild(link);
        list.appendChild(item);
        if (thumbs) thumbFor(link);
      });
      box.appendChild(head);
      box.appendChild(list);
      box.appendChild(element("p", "muted method", kind.method));
    });
  }

  function initRelated() {
    var boxes = document.querySelectorAll(".related[data-unit]");
    for (var i = 0; i < boxes.length; i++) {
      var src = new URL("../related.js", location.href).href;
      if (relatedTables[src]) drawRelated(boxes[i], src);
      else whenLoaded(src, "related " + src, drawRelated.bind(null, boxes[i], src));
    }
  }

  // ---------------------------------------------------------------- text examples
  // A <pre class="tx-ctx"> holds the plain text of an example's stretch; data-n gives each token's
  // length (one character each, chr(48 + length), or comma-separated numbers), data-l its colour
  // level (a character of TEXT_LEVELS: "i" is zero; or data-w, the whole window's, from data-lo on),
  // data-at the extreme token. The script splits the
  // text into coloured tokens; the page reads the same without it, uncoloured.
  var TEXT_ZERO = "i".charCodeAt(0);

  function lengthsOf(code) {
    if (code.indexOf(",") !== -1) return code.split(",").map(Number);
    var out = [];
    for (var i = 0; i < code.length; i++) out.push(code.charCodeAt(i) - 48);
    return out;
  }

  function tokenSpan(text, level, extreme, scale) {
    var step = level.charCodeAt(0) - TEXT_ZERO, span = document.createElement("span");
    span.className = "t " + (step > 0 ? "p" + step : step < 0 ? "n" + (-step) : "z") +
      (/^[\u00b7\u2192\u21b5\s]+$/.test(text) ? " ws" : "") + (extreme ? " x" : "");
    if (scale) span.title = "\u2248 " + Number((step / 8 * scale).toPrecision(3));
    span.textContent = text;
    return span;
  }

  // Without data-n every character is a token (a character-level model), a drawn line break
  // "\u21b5\n" among them.
  function charTokens(text) {
    var chars = Array.from(text), out = [];
    for (var i = 0; i < chars.length; i++) {
      if (chars[i] === "\u21b5" && chars[i + 1] === "\n") out.push(chars[i] + chars[++i]);
      else out.push(chars[i]);
    }
    return out;
  }

  function colourText(pre, scale) {
    var text = pre.textContent, code = pre.getAttribute("data-n");
    var at = parseInt(pre.getAttribute("data-at"), 10), pieces = [], levels;
    if (code === null) pieces = charTokens(text);
    else for (var k = 0, pos = 0, lengths = lengthsOf(code); k < lengths.length; k++) {
      pieces.push(text.substr(pos, lengths[k]));
      pos += lengths[k];
    }
    if (pre.hasAttribute("data-l")) levels = unpack(pre.getAttribute("data-l"));
    else levels = unpack(pre.getAttribute("data-w")).substr(parseInt(pre.getAttribute("data-lo"), 10), pieces.length);
    if (pieces.length !== levels.length) return;
    var frag = document.createDocumentFragment();
    for (var j = 0; j < pieces.length; j++) frag.appendChild(tokenSpan(pieces[j], levels.charAt(j), j === at, scale));
    pre.textContent = "";
    pre.appendChild(frag);
  }

  // "whole window": the example's window, every token coloured, its text from the corpus' shards
  // (text/<corpus>/<n>.js, 8192 tokens each), loaded on the first click; without script the link
  // opens the input's page.
  var SHARD_TOKENS = 8192, textShards = {};
  window.galleriaText = function (key, number, pieces) {
    textShards[key + "/" + number] = pieces;
    scriptLoaded("text " + key + "/" + number);
  };

  function withPieces(folder, start, count, callback) {
    var key = folder.replace(/\/$/, "").split("/").pop(), first = Math.floor(start / SHARD_TOKENS);
    var last = Math.floor((start + count - 1) / SHARD_TOKENS), missing = 0;
    function done() {
      if (--missing > 0) return;
      var pieces = [];
      for (var n = first; n <= last; n++) pieces = pieces.concat(textShards[key + "/" + n]);
      var offset = start - first * SHARD_TOKENS;
      callback(pieces.slice(offset, offset + count));
    }
    missing = 1;
    for (var n = first; n <= last; n++) {
      if (textShards[key + "/" + n]) continue;
      missing++;
      whenLoaded(folder + n + ".js", "text " + key + "/" + n, done);
    }
    done();
  }

  function colourSection(section) {
    var scale = parseFloat(section.getAttribute("data-scale"));
    var pres = section.querySelectorAll("pre.tx-ctx[data-l], pre.tx-ctx[data-w]");
    for (var i = 0; i < pres.length; i++) colourText(pres[i], scale);
  }

  function initTextExamples(section) {
    var folder = section.getAttribute("data-shards"), scale = parseFloat(section.getAttribute("data-scale"));
    colourSection(section);
    var links = section.querySelectorAll("[data-window]");
    for (var j = 0; j < links.length; j++) {
      links[j].hidden = false;  // without script the example's source link opens its whole window
      links[j].addEventListener("click", function (event) {
        var link = event.currentTarget, item = link.closest("li"), pre = item.querySelector("pre.tx-ctx[data-w]");
        var shown = item.querySelector(".tx-window");
        event.preventDefault();
        if (shown) {
          shown.parentNode.removeChild(shown);
          link.textContent = "whole window";
          return;
        }
        if (!pre) return;
        var levels = unpack(pre.getAttribute("data-w")), start = parseInt(pre.getAttribute("data-s"), 10);
        var at = parseInt(pre.getAttribute("data-lo"), 10) + parseInt(pre.getAttribute("data-at"), 10);
        link.textContent = "loading\u2026";
        withPieces(folder, start, levels.length, function (pieces) {
          var out = document.createElement("pre");
          out.className = "tx-ctx tx-window";
          for (var k = 0; k < pieces.length; k++) out.appendChild(tokenSpan(pieces[k], levels.charAt(k), k === at, scale));
          item.appendChild(out);
          link.textContent = "hide window";
        });
      });
    }
  }

  // ---------------------------------------------------------------- site search
  // The index is a set of scripts (search/index.js, then search/units-N.js) calling back into
  // window.galleriaSearch: <script src> works from file:// where fetch() does not.
  var searchState = { loading: false, entries: null, units: null, waiting: [], failed: false, meta: null, parts: {} };

  window.galleriaSearch = {
    meta: function (data) {
      searchState.meta = data;
      if (!data.shards.length) return finishIndex();
      // Shard names carry a hash of their content: a cached index.js from an older build asks
      // for files that no longer exist, and fails cleanly, instead of mixing two builds.
      for (var i = 0; i < data.shards.length; i++) addScript("search/" + data.shards[i]);
    },
    shard: function (number, rows) {
      var meta = searchState.meta;
      if (!meta) return;
      searchState.parts[number] = rows;
      for (var i = 0; i < meta.shards.length; i++) if (!searchState.parts[i]) return;
      finishIndex();
    }
  };

  function searchRoot() {
    var form = document.querySelector("[data-search-root]");
    return form ? form.getAttribute("data-search-root") : "";
  }

  function addScript(path) {
    var script = document.createElement("script");
    script.src = searchRoot() + path;
    script.async = true;
    script.onerror = function () {
      searchState.failed = true;
      flushWaiting();
    };
    document.head.appendChild(script);
  }

  function flushWaiting() {
    var waiting = searchState.waiting;
    searchState.waiting = [];
    for (var i = 0; i < waiting.length; i++) waiting[i]();
  }

  function withIndex(callback) {
    if (searchState.entries || searchState.failed) return callback();
    searchState.waiting.push(callback);
    if (searchState.loading) return;
    searchState.loading = true;
    addScript("search/index.js");
  }

  function lower(text) { return (text || "").toLowerCase(); }

  function finishIndex() {
    try {
      buildEntries();
    } catch (e) {  // an index this script cannot read: say so rather than wait forever
      searchState.failed = true;
    }
    flushWaiting();
  }

  function buildEntries() {
    var meta = searchState.meta, entries = [], units = [], order = 0;
    meta.models.forEach(function (m) {
      entries.push({ kind: "model", title: m[0], label: m[2], sub: "model", url: m[1] + "/index.html",
        names: lower(m[0] + " " + m[1] + " model"), labelText: lower(m[2]), words: "", order: order++ });
    });
    meta.layers.forEach(function (l) {
      var model = meta.models[l[0]];
      entries.push({ kind: "layer", title: l[1], label: l[3], sub: "layer of " + model[0], url: l[2] + "/index.html",
        names: lower(l[1] + " " + model[0] + " " + model[1] + " layer"), labelText: lower(l[3]), words: "",
        order: order++ });
    });
    for (var s = 0; s < meta.shards.length; s++) {
      var rows = searchState.parts[s];
      for (var r = 0; r < rows.length; r++) {
        var row = rows[r], layer = meta.layers[row[0]], owner = meta.models[layer[0]], flags = [];
        for (var f = 0; f < meta.flags.length; f++) if (row[4] & (1 << f)) flags.push(meta.flags[f]);
        var entry = { kind: "unit", title: "Unit " + row[1], unit: row[1], label: row[2],
          sub: layer[1] + " · " + owner[0] + (flags.length ? " · " + flags.join(", ") : ""),
          url: layer[2] + "/" + row[1] + "/index.html",
          names: lower(layer[1] + " " + owner[0] + " " + owner[1] + " unit " + flags.join(" ")),
          labelText: lower(row[2]), words: lower(row[3]), order: order++ };
        entries.push(entry);
        units.push(entry);
      }
    }
    searchState.entries = entries;
    searchState.units = units;
  }

  // 2 where the term starts a word of text, 1 inside a word, 0 nowhere: "cat" ranks "cat fur"
  // above "scatter".
  function found(text, term) {
    var at = text.indexOf(term);
    if (at === -1) return 0;
    for (; at !== -1; at = text.indexOf(term, at + 1)) {
      if (at === 0 || !/[a-z0-9]/.test(text.charAt(at - 1))) return 2;
    }
    return 1;
  }

  // Every word must match somewhere; a unit's own number, then its label, then names, then its
  // notes and classes score in that order, so "cat" ranks a unit labelled cat above one that only
  // sees cats among its top examples. A number matches unit numbers and words, never inside names
  // ("0" is not every unit of efficientnet-lite0).
  function searchEntries(query, limit) {
    var terms = lower(query).split(/[\s\/]+/).filter(Boolean);
    if (!terms.length || !searchState.entries) return { total: 0, hits: [] };
    var hits = [];
    var entries = searchState.entries;
    for (var i = 0; i < entries.length; i++) {
      var e = entries[i], score = 0;
      for (var t = 0; t < terms.length; t++) {
        var term = terms[t].replace(/^#(?=\d)/, ""), number = /^\d+$/.test(term), got = 0;
        if (e.kind === "unit" && number && e.unit === parseInt(term, 10)) got = 10;
        else got = 3 * found(e.labelText, term) || (number ? 0 : found(e.names, term)) ||
          found(e.words, term) / 2;
        if (!got) { score = 0; break; }
        score += got;
      }
      if (score) hits.push({ entry: e, score: score + (e.kind !== "unit" ? 0.5 : 0) });
    }
    hits.sort(function (a, b) { return b.score - a.score || a.entry.order - b.entry.order; });
    return { total: hits.length, hits: hits.slice(0, limit) };
  }

  function resultLink(entry, root) {
    var a = document.createElement("a");
    a.href = root + entry.url;
    var title = document.createElement("span");
    title.className = "sr-title";
    title.textContent = entry.title;
    a.appendChild(title);
    if (entry.label) {
      var label = document.createElement("span");
      label.className = "sr-label";
      label.textContent = entry.label;
      a.appendChild(label);
    }
    var sub = document.createElement("span");
    sub.className = "sr-sub";
    sub.textContent = entry.sub;
    a.appendChild(sub);
    return a;
  }

  function initSearchBox(box) {
    var list = document.getElementById("search-results");
    var form = box.form;
    var root = searchRoot();
    var selected = -1;

    function links() { return list.querySelectorAll("a"); }
    function select(index) {
      var all = links();
      if (!all.length) return;
      selected = (index + all.length) % all.length;
      for (var i = 0; i < all.length; i++) all[i].classList.toggle("is-selected", i === selected);
    }
    function render() {
      var query = box.value.trim();
      while (list.firstChild) list.removeChild(list.firstChild);
      selected = -1;
      if (!query) { list.hidden = true; return; }
      if (searchState.failed) {
        var broken = document.createElement("li");
        broken.className = "sr-empty";
        broken.textContent = "The search index could not be loaded.";
        list.appendChild(broken);
        list.hidden = false;
        return;
      }
      var found = searchEntries(query, 10);
      found.hits.forEach(function (hit) {
        var li = document.createElement("li");
        li.appendChild(resultLink(hit.entry, root));
        list.appendChild(li);
      });
      var more = document.createElement("li");
      more.className = found.total ? "sr-more" : "sr-empty";
      if (found.total > found.hits.length) {
        var all = document.createElement("a");
        all.href = root + "search/index.html?q=" + encodeURIComponent(query);
        all.textContent = "all " + found.total.toLocaleString("en-US") + " results";
        more.appendChild(all);
      } else if (!found.total) {
        more.textContent = "No match for \u201c" + query + "\u201d";
      }
      if (more.firstChild) list.appendChild(more);
      list.hidden = false;
      select(0);
    }

    box.addEventListener("focus", function () { withIndex(function () { if (box.value.trim()) render(); }); });
    box.addEventListener("input", function () { withIndex(render); });
    box.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        select(selected + (event.key === "ArrowDown" ? 1 : -1));
      } else if (event.key === "Enter") {
        var all = links();
        if (selected >= 0 && all[selected]) {
          event.preventDefault();
          window.location.href = all[selected].href;
        }
      } else if (event.key === "Escape") {
        box.value = "";
        render();
        box.blur();
      }
    });
    document.addEventListener("click", function (event) {
      if (form && !form.contains(event.target)) list.hidden = true;
    });
  }

  // From the header link, a normal navigation (Back returns to the page); from the search page's
  // ?random, a replacement, so that Back does not land on ?random and go elsewhere again.
  function openRandomUnit(event) {
    var fallback = event ? event.currentTarget.href : null;
    if (event) event.preventDefault();
    withIndex(function () {
      var units = searchState.units;
      if (!units || !units.length) {
        var status = document.getElementById("search-status");
        if (fallback && !/search\/index\.html\?random$/.test(window.location.href)) window.location.href = fallback;
        else if (status) status.textContent = "The search index could not be loaded.";
        return;
      }
      var url = searchRoot() + units[Math.floor(Math.random() * units.length)].url;
      if (fallback) window.location.href = url;
      else window.location.replace(url);
    });
  }

  // The search page lists every match of ?q=...; ?random there opens a random unit (the random
  // link's target when scripts could not run on the page it was clicked on).
  function initSearchPage(list) {
    var status = document.getElementById("search-status") || document.createElement("p");
    if (/[?&]random(&|$)/.test(window.location.search)) return openRandomUnit();
    var match = /[?&]q=([^&#]*)/.exec(window.location.search), query = "";
    try {
      query = match ? decodeURIComponent(match[1].replace(/\+/g, " ")) : "";
    } catch (e) {  // a hand-typed "100%": take it as it is
      query = match[1].replace(/\+/g, " ");
    }
    var box = document.getElementById("search-box");
    if (box) box.value = query;
    if (!query) { status.textContent = "Type in the search box above."; return; }
    status.textContent = "Loading the index\u2026";
    withIndex(function () {
      if (searchState.failed) { status.textContent = "The search index could not be loaded."; return; }
      var found = searchEntries(query, 500);
      status.textContent = found.total.toLocaleString("en-US") + " result" + (found.total === 1 ? "" : "s") +
        " for \u201c" + query + "\u201d" + (found.total > found.hits.length ? " (first 500 shown)" : "");
      found.hits.forEach(function (hit) {
        var li = document.createElement("li");
        li.appendChild(resultLink(hit.entry, searchRoot()));
        list.appendChild(li);
      });
    });
  }

  // The header's tools, made here because each of them needs this script: the search box (its index
  // is scripts), the random unit link (it picks from the index) and the light/dark switch.
  function initHeader() {
    var row = document.querySelector(".header-row[data-search-root]");
    if (!row) return;
    var root = row.getAttribute("data-search-root");
    var form = document.createElement("form");
    form.className = "search";
    form.setAttribute("role", "search");
    form.action = root + "search/index.html";
    form.setAttribute("data-search-root", root);
    var box = document.createElement("input");
    box.type = "search";
    box.id = "search-box";
    box.name = "q";
    box.placeholder = "Search units, labels, classes";
    box.autocomplete = "off";
    box.setAttribute("aria-label", "Search models, layers and units (press /)");
    box.setAttribute("aria-controls", "search-results");
    var results = document.createElement("ol");
    results.id = "search-results";
    results.className = "search-results";
    results.setAttribute("aria-live", "polite");
    results.hidden = true;
    form.appendChild(box);
    form.appendChild(results);
    var random = document.createElement("a");
    random.className = "random-unit";
    random.href = root + "search/index.html?random";
    random.title = "Open a random unit";
    random.textContent = "random unit";
    random.setAttribute("data-random-unit", "");
    random.addEventListener("click", openRandomUnit);
    var toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "theme-toggle";
    toggle.setAttribute("data-theme-toggle", "");
    toggle.setAttribute("aria-label", "Switch between light and dark mode");
    toggle.innerHTML = '<span aria-hidden="true"></span>';
    row.appendChild(form);
    row.appendChild(random);
    row.appendChild(toggle);
  }

  // What the live probe (galleria-probe.js) draws with: the same loaders, thumbnails, colours and tokens.
  window.galleria = { whenLoaded: whenLoaded, scriptLoaded: scriptLoaded, thumbFor: thumbFor, tokenSpan: tokenSpan,
                      element: element, lut: LUT };

  function init() {
    initHeader();
    initThemeToggle();
    initKeys();
    var box = document.getElementById("search-box");
    if (box) initSearchBox(box);
    var page = document.getElementById("search-page-results");
    if (page) initSearchPage(page);
    initHeat(document);
    initThumbs();
    initRelated();
    var texts = document.querySelectorAll("[data-shards]");
    for (var t = 0; t < texts.length; t++) initTextExamples(texts[t]);
    var toggles = document.querySelectorAll("[data-viz-toggle]");
    for (var j = 0; j < toggles.length; j++) initVizToggle(toggles[j]);
    var tools = document.querySelectorAll("[data-grid-tools]");
    for (var i = 0; i < tools.length; i++) initGrid(tools[i], document);
  }

  // A notebook's view: its tiles' maps, its text's colours (with no shards to open) and its grid's tools.
  function initView(scope) {
    initHeat(scope);
    var texts = scope.querySelectorAll("[data-scale]");
    for (var t = 0; t < texts.length; t++) colourSection(texts[t]);
    var tools = scope.querySelectorAll("[data-grid-tools]");
    for (var i = 0; i < tools.length; i++) initGrid(tools[i], scope);
  }

  if (view) {
    if (!view.hasAttribute("data-drawn")) {  // a notebook may run an output's script again
      view.setAttribute("data-drawn", "");
      initView(view);
    }
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
