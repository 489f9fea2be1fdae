/* galleria's live probe: the visitor's own image or text through the model, in the page.
 *
 * A model's <model>/probe.js calls galleriaProbeModel(meta, onnx): the graph (gzip, base64) whose
 * outputs are each chosen layer's units as the build read them, [1, units, positions]. It runs in
 * onnxruntime-web's WebAssembly backend (assets/onnxruntime-web/runtime.js: its module and binary,
 * gzip, base64), single-threaded, so no cross-origin isolation is needed. Both are loaded as scripts
 * on first use, never fetched: fetch() is refused from file://. Under `galleria serve` the server
 * answers with PyTorch instead (window.galleriaServer, set by the page's reload script).
 *
 * Images are prepared exactly as the build prepares them (Pillow's centre square, reduce and
 * bilinear resize, mean/std); text is tokenized as the model's tokenizer does it (a character
 * vocabulary, BERT's WordPiece or GPT-2's byte-level BPE; galleria/probe/tokenizer.py says which).
 */
(function () {
  "use strict";
  var G = window.galleria;
  var runtime = null, runtimeParts = null, models = {};

  // ------------------------------------------------------------------ loading
  function gunzip(b64) {
    var raw = atob(b64), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).arrayBuffer().then(function (buffer) { return new Uint8Array(buffer); });
  }

  function loaded(src, key) {
    return new Promise(function (resolve) { G.whenLoaded(src, key, resolve); });
  }

  window.galleriaProbeRuntime = function (module, wasm) {
    runtimeParts = { module: module, wasm: wasm };
    G.scriptLoaded("probe runtime");
  };

  window.galleriaProbeModel = function (meta, onnx) {
    var src = document.currentScript && document.currentScript.src;
    models[src] = { meta: meta, onnx: onnx, session: null };
    G.scriptLoaded("probe " + src);
  };

  function ortRuntime(src) {
    if (!runtime) {
      runtime = loaded(src, "probe runtime").then(function () {
        return Promise.all([gunzip(runtimeParts.module), gunzip(runtimeParts.wasm)]);
      }).then(function (parts) {
        runtimeParts = null;
        var url = URL.createObjectURL(new Blob([parts[0]], { type: "text/javascript" }));
        return import(url).then(function (ort) {
          ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which file:// and Pages lack
          ort.env.wasm.proxy = false;
          ort.env.wasm.wasmBinary = parts[1];
          return ort;
        });
      });
    }
    return runtime;
  }

  function modelMeta(box) {
    var src = new URL(box.getAttribute("data-probe"), location.href).href;
    if (models[src]) return Promise.resolve(models[src]);
    return loaded(src, "probe " + src).then(function () { return models[src]; });
  }

  function session(box, model) {
    if (!model.session) {
      var runtimeSrc = probeUrl(box, "../assets/onnxruntime-web/runtime.js");
      model.session = Promise.all([ortRuntime(runtimeSrc), gunzip(model.onnx)]).then(function (parts) {
        model.onnx = null;
        return parts[0].InferenceSession.create(parts[1], { executionProviders: ["wasm"] }).then(function (s) {
          return { ort: parts[0], session: s };
        });
      });
    }
    return model.session;
  }

  // ------------------------------------------------------------------ images, as the build prepares them
  // Pillow's Image.resize(size, BILINEAR, reducing_gap=2.0) on the centre square (sources/images.py).
  function decode(file, channels) {
    return createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none",
                                     imageOrientation: "none" }).then(function (bitmap) {
      var canvas = document.createElement("canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      var ctx = canvas.getContext("2d");
      ctx.drawImage(bitmap, 0, 0);
      var rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
      var n = bitmap.width * bitmap.height, out = new Uint8Array(n * channels);
      for (var i = 0; i < n; i++) {
        var a = rgba[4 * i + 3], c = [];
        for (var k = 0; k < 3; k++) c.push(a === 255 ? rgba[4 * i + k] : Math.round((rgba[4 * i + k] * a + 255 * (255 - a)) / 255));
        if (channels === 1) out[i] = (c[0] * 19595 + c[1] * 38470 + c[2] * 7471 + 0x8000) >> 16;  // Pillow's "L"
        else for (var j = 0; j < 3; j++) out[3 * i + j] = c[j];
      }
      return { width: bitmap.width, height: bitmap.height, channels: channels, data: out };
    });
  }

  function crop(img, left, top, size) {
    var c = img.channels, out = new Uint8Array(size * size * c);
    for (var y = 0; y < size; y++) {
      var from = ((top + y) * img.width + left) * c;
      out.set(img.data.subarray(from, from + size * c), y * size * c);
    }
    return { width: size, height: size, channels: c, data: out };
  }

  function divider(n) {  // Reduce.c's division_UINT32(n, 8), in single precision as there
    return Math.floor(Math.fround(Math.fround(4294967296) / Math.fround(256 * n)));
  }

  function reduce(img, fx, fy) {  // Pillow's Image.reduce: box means, partial blocks at the edges
    var c = img.channels, w = Math.ceil(img.width / fx), h = Math.ceil(img.height / fy);
    var out = new Uint8Array(w * h * c);
    for (var y = 0; y < h; y++) {
      var y0 = y * fy, y1 = Math.min(y0 + fy, img.height);
      for (var x = 0; x < w; x++) {
        var x0 = x * fx, x1 = Math.min(x0 + fx, img.width), n = (x1 - x0) * (y1 - y0);
        var mult = divider(n), amend = Math.floor(n / 2);
        for (var k = 0; k < c; k++) {
          var ss = 0;
          for (var yy = y0; yy < y1; yy++) for (var xx = x0; xx < x1; xx++) ss += img.data[(yy * img.width + xx) * c + k];
          out[(y * w + x) * c + k] = Math.floor((ss + amend) * mult / 16777216);
        }
      }
    }
    return { width: w, height: h, channels: c, data: out };
  }

  var PRECISION = 1 << 22;  // Resample.c: 32 - 8 - 2 bits of fixed point

  function coefficients(inSize, in0, in1, outSize) {  // Resample.c's precompute_coeffs, bilinear
    var scale = Math.fround(Math.fround(in1 - in0) / outSize), filterScale = Math.max(scale, 1);
    var support = filterScale, bounds = [], weights = [];
    for (var xx = 0; xx < outSize; xx++) {
      var center = in0 + (xx + 0.5) * scale, ww = 0, k = [];
      var xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      var xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      for (var x = 0; x < xmax; x++) {
        var t = Math.abs((x + xmin - center + 0.5) / filterScale), w = t < 1 ? 1 - t : 0;
        k.push(w);
        ww += w;
      }
      bounds.push(xmin);
      weights.push(k.map(function (v) {
        v = ww !== 0 ? v / ww : v;
        return v < 0 ? Math.trunc(v * PRECISION - 0.5) : Math.trunc(v * PRECISION + 0.5);
      }));
    }
    return { bounds: bounds, weights: weights };
  }

  function clip8(ss) { return ss <= 0 ? 0 : ss >= PRECISION * 256 ? 255 : Math.floor(ss / PRECISION); }

  // One of Pillow's two passes: along each row (horizontal) or each column, to ``size`` pixels from
  // the span [lo, hi) of input pixels.
  function resampleAxis(img, horizontal, lo, hi, size) {
    var c = img.channels, w = img.width, h = img.height;
    var coef = coefficients(horizontal ? w : h, lo, hi, size), outW = horizontal ? size : w, outH = horizontal ? h : size;
    var step = horizontal ? c : w * c, out = new Uint8Array(outW * outH * c);  // step: the next input pixel along it
    for (var y = 0; y < outH; y++) for (var x = 0; x < outW; x++) {
      var along = horizontal ? x : y, k = coef.weights[along];
      var first = (horizontal ? y * w + coef.bounds[along] : coef.bounds[along] * w + x) * c;
      for (var ch = 0; ch < c; ch++) {
        var ss = PRECISION / 2;
        for (var i = 0; i < k.length; i++) ss += img.data[first + i * step + ch] * k[i];
        out[(y * outW + x) * c + ch] = clip8(ss);
      }
    }
    return { width: outW, height: outH, channels: c, data: out };
  }

  function resample(img, outW, outH, box) {  // horizontal pass, then vertical, each only if needed, as Pillow does
    if (outW !== img.width || box[0] !== 0 || box[2] !== img.width) img = resampleAxis(img, true, box[0], box[2], outW);
    if (outH !== img.height || box[1] !== 0 || box[3] !== img.height) img = resampleAxis(img, false, box[1], box[3], outH);
    return img;
  }

  function prepareImage(file, feed) {
    var outH = feed.size[0], outW = feed.size[1];
    return decode(file, feed.channels).then(function (img) {
      var side = Math.min(img.width, img.height);
      img = crop(img, Math.floor((img.width - side) / 2), Math.floor((img.height - side) / 2), side);
      var fx = Math.floor(side / outW / 2) || 1, fy = Math.floor(side / outH / 2) || 1;
      var box = [0, 0, side, side];
      if (fx > 1 || fy > 1) {
        img = reduce(img, fx, fy);
        box = [0, 0, Math.fround(side / fx), Math.fround(side / fy)];
      }
      img = resample(img, outW, outH, box);
      var c = img.channels, plane = outW * outH, x = new Float32Array(c * plane);
      for (var p = 0; p < plane; p++) for (var k = 0; k < c; k++) {
        x[k * plane + p] = (img.data[p * c + k] / 255 - feed.mean[k]) / feed.std[k];
      }
      return { pixels: img, tensor: x, dims: [1, c, outH, outW] };
    });
  }

  // ------------------------------------------------------------------ text, as the model's tokenizer cuts it
  function vocabulary(tok) {  // token -> id, made once per tokenizer
    if (!tok.index) {
      tok.index = new Map();
      tok.tokens.forEach(function (t, i) { tok.index.set(t, i); });
    }
    return tok.index;
  }

  function charTokens(text, tok) {
    var index = vocabulary(tok), chars = Array.from(text);
    return { ids: chars.map(function (ch) { return index.has(ch) ? index.get(ch) : tok.unknown; }), pieces: chars };
  }

  var PUNCTUATION = /[\u0021-\u002f\u003a-\u0040\u005b-\u0060\u007b-\u007e]|\p{P}/u;
  var CHINESE = /[\u4e00-\u9fff\u3400-\u4dbf\u{20000}-\u{2a6df}\u{2a700}-\u{2b73f}\u{2b740}-\u{2b81f}\u{2b820}-\u{2ceaf}\uf900-\ufaff\u{2f800}-\u{2fa1f}]/u;

  // BERT's normalizer and pre-tokenizer, then greedy longest-match WordPiece (tokenizers' rules).
  function wordPieces(text, tok) {
    vocabulary(tok);
    var ids = [], pieces = [], words = [], start = -1, chars = Array.from(text), offset = 0, at = [];
    chars.forEach(function (ch) { at.push(offset); offset += ch.length; });
    function flush(end) {
      if (start >= 0) words.push([start, end]);
      start = -1;
    }
    chars.forEach(function (ch, i) {
      var code = ch.codePointAt(0);
      if (tok.clean_text && (code === 0 || code === 0xfffd || (/\p{C}/u.test(ch) && !/[\t\n\r]/.test(ch)))) {
        flush(i);
        return;
      }
      if (/\s/.test(ch)) { flush(i); return; }
      if (PUNCTUATION.test(ch) || (tok.chinese_chars && CHINESE.test(ch))) {
        flush(i);
        words.push([i, i + 1]);
        return;
      }
      if (start < 0) start = i;
    });
    flush(chars.length);
    var end = 0;  // each piece is the text a token covers and the space before it, as the build's pieces
    words.forEach(function (w) {
      var word = chars.slice(w[0], w[1]).join("");
      if (tok.lowercase) word = word.toLowerCase();
      if (tok.strip_accents) word = word.normalize("NFD").replace(/\p{Mn}/gu, "");
      var sub = Array.from(word), found = [], pos = 0, bad = sub.length > tok.max_chars;
      while (!bad && pos < sub.length) {
        var stop = sub.length, id = -1;
        for (; stop > pos; stop--) {
          var piece = (pos > 0 ? tok.prefix : "") + sub.slice(pos, stop).join("");
          if (tok.index.has(piece)) { id = tok.index.get(piece); break; }
        }
        if (id < 0) bad = true;
        else { found.push([id, stop]); pos = stop; }
      }
      if (bad || !found.length) found = [[tok.unknown, sub.length]];
      found.forEach(function (f, k) {
        var stopAt = k === found.length - 1 ? w[1] : Math.min(w[0] + f[1], w[1]);
        ids.push(f[0]);
        pieces.push(text.slice(at[end], stopAt < chars.length ? at[stopAt] : offset));
        end = stopAt;
      });
    });
    return { ids: ids, pieces: pieces };
  }

  // GPT-2's byte-level BPE: its pre-tokenizer's regex, each UTF-8 byte as a printable character, then
  // the merges in rank order (tokenizers' ByteLevel and BPE models).
  var GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
  var BYTE_CHARS = (function () {
    var out = [], extra = 0;
    for (var b = 0; b < 256; b++) {
      var printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      out.push(String.fromCharCode(printable ? b : 256 + extra++));
    }
    return out;
  })();

  function bytePairs(text, tok) {
    vocabulary(tok);
    if (!tok.ranks) {
      tok.ranks = new Map();
      tok.merges.forEach(function (m, i) { tok.ranks.set(m[0] + " " + m[1], i); });
    }
    var ids = [], pieces = [], encoder = new TextEncoder(), end = 0, match;
    GPT2_SPLIT.lastIndex = 0;
    while ((match = GPT2_SPLIT.exec(text)) !== null) {
      var word = match[0], bytes = encoder.encode(word), starts = [];  // starts: UTF-16 offset of each byte's character
      for (var i = 0, pos = 0; i < word.length; i++) {
        var code = word.codePointAt(i), size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
        for (var k = 0; k < size; k++) starts.push(k === 0 ? pos : -1);
        pos += code >= 0x10000 ? 2 : 1;
        if (code >= 0x10000) i++;
      }
      starts.push(word.length);
      var symbols = Array.from(bytes, function (b) { return BYTE_CHARS[b]; }), lengths = symbols.map(function () { return 1; });
      if (!(tok.ignore_merges && tok.index.has(symbols.join("")))) {
        while (symbols.length > 1) {
          var best = -1, bestRank = Infinity;
          for (var j = 0; j + 1 < symbols.length; j++) {
            var rank = tok.ranks.get(symbols[j] + " " + symbols[j + 1]);
            if (rank !== undefined && rank < bestRank) { bestRank = rank; best = j; }
          }
          if (best < 0) break;
          var a = symbols[best], b2 = symbols[best + 1], merged = [], mergedLengths = [];
          for (var n = 0; n < symbols.length; n++) {
            if (n + 1 < symbols.length && symbols[n] === a && symbols[n + 1] === b2) {
              merged.push(a + b2);
              mergedLengths.push(lengths[n] + lengths[n + 1]);
              n++;
            } else {
              merged.push(symbols[n]);
              mergedLengths.push(lengths[n]);
            }
          }
          symbols = merged;
          lengths = mergedLengths;
        }
      } else {
        symbols = [symbols.join("")];
        lengths = [bytes.length];
      }
      var byte = 0;
      symbols.forEach(function (symbol, s2) {
        byte += lengths[s2];
        var stopByte = byte;
        while (starts[stopByte] === -1) stopByte++;  // a token ending inside a character covers all of it
        var stop = match.index + starts[stopByte];
        ids.push(tok.index.has(symbol) ? tok.index.get(symbol) : tok.unknown);
        pieces.push(text.slice(end, Math.max(stop, end)));
        end = Math.max(stop, end);
      });
    }
    return { ids: ids, pieces: pieces };
  }

  function prepareText(text, feed) {
    var tok = feed.tokenizer;
    var cut = tok.kind === "chars" ? charTokens(text, tok) : tok.kind === "bpe" ? bytePairs(text, tok) : wordPieces(text, tok);
    var room = feed.length ? feed.length - feed.lead.length - feed.trail.length : feed.window;
    var truncated = cut.ids.length > room;
    var ids = feed.lead.concat(cut.ids.slice(0, room), feed.trail);
    var shown = Math.min(cut.ids.length, room);
    if (feed.length) while (ids.length < feed.length) ids.push(0);  // after the text: a model that only looks back ignores it
    return { ids: ids, pieces: cut.pieces.slice(0, shown), count: shown, truncated: truncated,
             dims: [1, ids.length] };
  }

  // ------------------------------------------------------------------ running
  // Resolves to {meta, values: per layer {data: Float32Array [units * positions], positions}, pieces
  // (text), pixels (an image as the model saw it), ms, by}. Served by galleria serve, the server's
  // PyTorch answers; otherwise onnxruntime-web in the page.
  function probeUrl(box, relative) {  // <root><model>/probe.js: the model's folder, and the site's root
    return new URL(relative, new URL(box.getAttribute("data-probe"), location.href)).href;
  }

  function modelId(box) {
    return decodeURIComponent(probeUrl(box, ".").replace(/\/$/, "").split("/").pop());
  }

  function serverMeta(box) {
    var key = "server " + box.getAttribute("data-probe");
    if (!models[key]) {
      models[key] = fetch(window.galleriaServer + "probe/" + encodeURIComponent(modelId(box)))
        .then(answered).then(function (meta) { return { meta: meta }; });
    }
    return models[key];
  }

  function answered(r) {
    if (!r.ok) return r.text().then(function (t) { throw new Error(t || r.statusText); });
    return r.json();
  }

  function probe(box, input) {
    var started = performance.now(), served = !!window.galleriaServer;
    return (served ? serverMeta(box) : modelMeta(box)).then(function (model) {
      var feed = model.meta.feed, prepared;
      if (feed.kind === "image") prepared = prepareImage(input, feed);
      else prepared = Promise.resolve(served ? {} : prepareText(input, feed));
      return prepared.then(function (ready) {
        return (served ? fromServer(model.meta, input, ready) : fromBrowser(box, model, ready)).then(function (values) {
          ready.values = values.values;
          ready.by = values.by;
          ready.meta = model.meta;
          ready.ms = performance.now() - started;
          return ready;
        });
      });
    });
  }

  function fromBrowser(box, model, ready) {
    return session(box, model).then(function (s) {
      var feed = model.meta.feed, tensor = feed.kind === "image" ? new s.ort.Tensor("float32", ready.tensor, ready.dims)
        : new s.ort.Tensor("int64", BigInt64Array.from(ready.ids.map(BigInt)), ready.dims);
      return s.session.run({ input: tensor }).then(function (out) {
        var values = model.meta.layers.map(function (layer, i) {
          var t = out["layer" + i], positions = t.dims[2];
          if (ready.count === undefined || positions === ready.count) return { data: t.data, positions: positions };
          return { data: firstPositions(t.data, t.dims[1], positions, ready.count), positions: ready.count };
        });
        return { values: values, by: "onnxruntime-web in this page" };
      });
    });
  }

  function firstPositions(data, units, positions, keep) {  // a padded text's values, without the padding
    var out = new Float32Array(units * keep);
    for (var u = 0; u < units; u++) out.set(data.subarray(u * positions, u * positions + keep), u * keep);
    return out;
  }

  function fromServer(meta, input, ready) {
    return fetch(window.galleriaServer + "probe/" + encodeURIComponent(meta.model), { method: "POST", body: input })
      .then(answered).then(function (answer) {
        if (answer.pieces) {
          ready.pieces = answer.pieces;
          ready.count = answer.count;
          ready.truncated = answer.truncated;
        }
        return { values: answer.layers.map(function (l) { return { data: Float32Array.from(l.values), positions: l.positions }; }),
                 by: "PyTorch in galleria serve" };
      });
  }

  function peak(values, column) {
    var best = -Infinity, at = 0;
    for (var p = 0; p < values.positions; p++) {
      var v = values.data[column * values.positions + p];
      if (v > best) { best = v; at = p; }
    }
    return { value: best, at: at };
  }

  // ------------------------------------------------------------------ drawing
  function el(tag, className, text) { return G.element(tag, className, text); }

  function pct(share) { return (100 * share).toPrecision(2).replace(/\.?0+$/, "") + "%"; }

  function fmt(v) { return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.01) ? v.toExponential(2) : v.toFixed(3).replace(/\.?0+$/, ""); }

  function drawImage(canvas, pixels, map, grid, lo, hi) {
    var w = pixels.width, h = pixels.height, c = pixels.channels, ctx = canvas.getContext("2d");
    canvas.width = w;
    canvas.height = h;
    var image = ctx.createImageData(w, h);
    for (var i = 0; i < w * h; i++) {
      for (var k = 0; k < 3; k++) image.data[4 * i + k] = pixels.data[i * c + (c === 1 ? 0 : k)];
      image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    if (!map) return;
    var heat = document.createElement("canvas"), hctx = heat.getContext("2d");
    heat.width = grid[1];
    heat.height = grid[0];
    var cells = hctx.createImageData(grid[1], grid[0]);
    for (var j = 0; j < grid[0] * grid[1]; j++) {  // tiles.py's colours: inferno, 0.65 opacity at the top of the scale
      var strength = Math.max(0, Math.min(1, (map[j] - lo) / ((hi - lo) || 1))), colour = G.lut[Math.round(strength * 255)];
      cells.data[4 * j] = colour[0];
      cells.data[4 * j + 1] = colour[1];
      cells.data[4 * j + 2] = colour[2];
      cells.data[4 * j + 3] = Math.round(strength * 0.65 * 255);
    }
    hctx.putImageData(cells, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(heat, 0, 0, w, h);
  }

  function drawText(pre, pieces, values, column, scale, at) {
    pre.textContent = "";
    for (var p = 0; p < pieces.length; p++) {
      var v = values.data[column * values.positions + p];
      var step = Math.max(-8, Math.min(8, Math.round(v / (scale || 1) * 8)));
      var piece = pieces[p].replace(/\n/g, "\u21b5\n");
      var span = G.tokenSpan(piece, String.fromCharCode(105 + step), p === at, scale);
      span.title = fmt(v);
      pre.appendChild(span);
    }
  }

  function markHistogram(svg, value, lo, hi) {
    var old = svg.querySelector(".probe-mark");
    if (old) old.parentNode.removeChild(old);
    var width = svg.viewBox.baseVal.width, height = svg.viewBox.baseVal.height, plot = width - 4;
    var x = 2 + Math.max(0, Math.min(1, (value - lo) / ((hi - lo) || 1))) * plot;
    var line = document.createElementNS("http://www.w3.org/2000/svg", "path");
    line.setAttribute("class", "probe-mark");
    line.setAttribute("d", "M" + x.toFixed(1) + " 0V" + (height - 12));
    var title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = "your input: " + fmt(value) + (value > hi || value < lo ? " (beyond the histogram)" : "");
    line.appendChild(title);
    svg.appendChild(line);
  }

  // ------------------------------------------------------------------ the three views
  // The box is drawn here from its data attributes (templates' partials/probe.html): pages carry
  // only those, and without script there is nothing to show.
  function drawBox(box) {
    var text = box.getAttribute("data-kind") === "text", unit = box.hasAttribute("data-unit");
    var head = el("h2", "section-title", "Try your own " + (text ? "text" : "image"));
    var form = el("form", "probe-form"), label = el("label", "probe-input"), result = el("div", "probe-result");
    if (text) {
      var area = el("textarea");
      area.rows = 3;
      area.spellcheck = false;
      area.placeholder = "Type or paste text, then run it";
      area.setAttribute("aria-label", "Your text");
      label.appendChild(area);
    } else {
      var file = el("input");
      file.type = "file";
      file.accept = "image/*";
      label.appendChild(el("span", "", "Drop an image here or choose one "));
      label.appendChild(file);
    }
    var run = el("button", "", "Run");
    run.type = "submit";
    form.appendChild(label);
    form.appendChild(run);
    var status = el("p", "probe-status muted");
    status.setAttribute("aria-live", "polite");
    result.hidden = true;
    if (text) {
      var pre = el("pre", "tx-ctx probe-text");
      pre.hidden = true;
      result.appendChild(pre);
    } else {
      var canvas = el("canvas", "probe-image");
      canvas.hidden = true;
      result.appendChild(canvas);
    }
    if (unit) {
      var reading = el("p", "probe-reading", "peak ");
      reading.appendChild(el("b", "probe-peak mono"));
      reading.appendChild(document.createTextNode(" "));
      reading.appendChild(el("span", "probe-relative muted"));
      reading.appendChild(document.createTextNode("; marked on the histogram"));
      result.appendChild(reading);
    } else {
      result.appendChild(el("div", "probe-units"));
      result.appendChild(el("p", "muted method", "Units that respond most to your input relative to their own highest " +
        "peak on the gallery's inputs" + (box.hasAttribute("data-layer") ? "." : ", per layer.")));
    }
    var facts = (box.getAttribute("data-browser") || "").split(" "), about = el("p", "muted method", (facts[0] ?
      "Runs the model in this page with onnxruntime-web (WebAssembly): a " + facts[0] + " MB download of " + facts[1] +
      " weights, on first use. It agrees with the gallery's PyTorch values to " + pct(+facts[2]) + " of a layer's largest value." :
      "Answered by galleria serve with PyTorch; not in the published site because " + box.getAttribute("data-left-out") + ".") +
      (unit && !text ? " Your image is prepared as the gallery's were: its centre square, resized to the model's input." : ""));
    if (box.hasAttribute("data-page")) {
      var every = el("a", "", "Every layer");
      every.href = box.getAttribute("data-page");
      about.appendChild(document.createTextNode(" "));
      about.appendChild(every);
      about.appendChild(document.createTextNode("."));
    }
    [head, form, status, result, about].forEach(function (part) { box.appendChild(part); });
  }

  function inputControls(box, onInput) {
    var form = box.querySelector("form");
    var file = form.querySelector("input[type=file]"), area = form.querySelector("textarea");
    if (file) {
      file.addEventListener("change", function () { if (file.files[0]) onInput(file.files[0]); });
      box.addEventListener("dragover", function (e) { e.preventDefault(); box.classList.add("drop"); });
      box.addEventListener("dragleave", function () { box.classList.remove("drop"); });
      box.addEventListener("drop", function (e) {
        e.preventDefault();
        box.classList.remove("drop");
        if (e.dataTransfer.files[0]) onInput(e.dataTransfer.files[0]);
      });
    }
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (area && area.value) onInput(area.value);
      else if (file && file.files[0]) onInput(file.files[0]);
    });
  }

  function status(box, text, error) {
    var line = box.querySelector(".probe-status");
    line.textContent = text;
    line.classList.toggle("warn", !!error);
  }

  function timing(result) {
    return "computed by " + result.by + " in " + Math.round(result.ms) + " ms" +
      (result.truncated ? "; only the first " + result.count + " tokens were read" : "");
  }

  function initUnit(box) {  // a unit page: the unit's map or coloured text, its peak, its place on the histogram
    var layerIndex = +box.getAttribute("data-layer"), result = box.querySelector(".probe-result");
    var unitId = +(/\/(\d+)\/(?:index\.html)?$/.exec(location.pathname) || [])[1];
    inputControls(box, function (input) {
      status(box, "running the model\u2026");
      probe(box, input).then(function (r) {
        var values = r.values[layerIndex], layer = r.meta.layers[layerIndex], column = layer.units.indexOf(unitId);
        var top = peak(values, column), max = layer.max[column];
        var canvas = result.querySelector("canvas"), pre = result.querySelector("pre");
        if (r.pixels) {  // the page's colour scale: 0 to the unit's highest value (examples.py)
          var map = values.positions > 1 ? values.data.subarray(column * values.positions + layer.prefix,
                                                               (column + 1) * values.positions) : null;
          drawImage(canvas, r.pixels, map && layer.grid ? map : null, layer.grid, 0, Math.max(max, 1e-6));
          canvas.hidden = false;
        } else {  // ±the unit's largest magnitude
          drawText(pre, r.pieces, values, column, layer.scale[column], top.at);
          pre.hidden = false;
        }
        result.setAttribute("data-probe-value", String(top.value));
        result.setAttribute("data-probe-ms", String(Math.round(r.ms)));
        result.querySelector(".probe-peak").textContent = fmt(top.value);
        result.querySelector(".probe-relative").textContent = max > 0 ? Math.round(100 * top.value / max) + "% of its highest on the inputs (" + fmt(max) + ")" : "";
        var svg = document.querySelector(".unit-hist svg.hist[data-range]");
        if (svg) {
          var range = svg.getAttribute("data-range").split(" ").map(Number);
          markHistogram(svg, top.value, range[0], range[1]);
        }
        result.hidden = false;
        status(box, timing(r));
      }).catch(function (e) { status(box, "the probe failed: " + e.message, true); });
    });
  }

  var RANKED = 12;  // units listed per layer for a visitor's input

  function ranked(r, layers, count) {  // per layer, the units that respond most relative to their own maximum
    return layers.map(function (i) {
      var layer = r.meta.layers[i], values = r.values[i], rows = [];
      layer.units.forEach(function (unit, column) {
        var top = peak(values, column), max = layer.max[column];
        if (max > 0 && top.value > 0) rows.push({ unit: unit, value: top.value, relative: top.value / max });
      });
      rows.sort(function (a, b) { return b.relative - a.relative; });
      return { layer: layer, rows: rows.slice(0, count) };
    });
  }

  function initRanking(box) {  // a layer page (data-layer) or a model's probe page (every layer)
    var count = RANKED, result = box.querySelector(".probe-result");
    var root = probeUrl(box, "../");
    inputControls(box, function (input) {
      status(box, "running the model\u2026");
      probe(box, input).then(function (r) {
        var only = box.getAttribute("data-layer"), layers = only !== null ? [+only] : r.meta.layers.map(function (_, i) { return i; });
        var list = result.querySelector(".probe-units");
        list.textContent = "";
        var best = null;
        ranked(r, layers, count).forEach(function (found) {
          if (!found.rows.length) return;
          if (layers.length > 1) {
            var head = el("h3", "probe-layer"), link = el("a", "", found.layer.name);
            link.href = new URL(found.layer.url + "index.html", root).href;
            head.appendChild(link);
            list.appendChild(head);
          }
          var ul = el("ul", "chips probe-chips");
          found.rows.forEach(function (row) {
            var item = el("li", "chip up"), a = el("a", r.pixels ? "u" : "");
            a.href = new URL(found.layer.url + row.unit + "/index.html", root).href;
            var label = found.layer.labels[row.unit], name = el("span", "", String(row.unit));
            if (label) {
              name.appendChild(document.createTextNode(" "));
              name.appendChild(el("span", "unit-label", label));
            }
            a.appendChild(name);
            a.appendChild(document.createTextNode(" "));
            a.appendChild(el("span", "v", Math.round(100 * row.relative) + "%"));
            a.title = "peak " + fmt(row.value) + ", " + Math.round(100 * row.relative) + "% of its highest on the inputs";
            a.setAttribute("data-probe-value", String(row.value));
            item.appendChild(a);
            ul.appendChild(item);
            if (r.pixels) G.thumbFor(a);
            if (!best) best = row;
          });
          list.appendChild(ul);
        });
        if (!list.childNodes.length) list.appendChild(el("p", "empty", "No unit rose above zero on this input."));
        var canvas = result.querySelector("canvas"), pre = result.querySelector("pre");
        if (r.pixels) { drawImage(canvas, r.pixels, null); canvas.hidden = false; }
        else { pre.textContent = r.pieces.join(""); pre.hidden = false; }
        result.hidden = false;
        status(box, timing(r));
      }).catch(function (e) { status(box, "the probe failed: " + e.message, true); });
    });
  }

  function init() {
    var boxes = document.querySelectorAll(".probe[data-probe]");
    for (var i = 0; i < boxes.length; i++) {
      if (!window.galleriaServer && !boxes[i].hasAttribute("data-browser")) continue;  // galleria serve only
      drawBox(boxes[i]);
      boxes[i].hidden = false;
      if (boxes[i].hasAttribute("data-unit")) initUnit(boxes[i]);
      else initRanking(boxes[i]);
    }
  }

  window.galleriaProbe = { prepareImage: prepareImage, prepareText: prepareText, probe: probe };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
