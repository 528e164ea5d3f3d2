"use strict";
// An ncaedit rule, live: the step of ncaedit/rule.py (engine.py) in WebGL2 fragment shaders.
//
// State layout on the GPU: the photo is an RGBA8 texture (channels 0-2, frozen, read as 2*rgb-1);
// the writable channels 3.. are packed four to an RGBA32F texture, in two sets that take turns
// (read one, write the other with multiple render targets). A rule with coarse perception also keeps,
// for each spacing d = 2, 4, ..., the smoothed copy of all 1 + T textures that it reads, as the
// layers of one RGBA32F array texture, rebuilt before every step. The network's weights are RGBA32F
// textures (in SwiftShader these cost less CPU time than uniform buffers, fused or unrolled loops).
// Texel row 0 is the photo's top row, so gl_FragCoord.y is the row index of noise.py.
(() => {
  const data = JSON.parse(document.getElementById("nca-rule").textContent);
  const $ = (id) => document.getElementById(id);
  const MAX_SIDE = 4096; // photos larger than this (or than the GPU's limit) are scaled down
  const MIN_SIDE = 8; // as ncaedit.image.MIN_SIDE
  const HIDDEN_NOISE = 0.1; // as ncaedit.state.HIDDEN_NOISE
  const LEVELS_PIXELS = 1 << 20; // as ncaedit.state.LEVELS_PIXELS
  const MIN_CONTRAST = 0.05; // as ncaedit.state.MIN_CONTRAST

  const arch = data.arch;
  const C = 6 + arch.hidden_channels; // channels
  const OUTS = C - 3; // writable channels
  const T = Math.ceil(OUTS / 4); // writable RGBA32F textures per set
  const S = 4 * (1 + T); // feature slots of one spacing: the photo's texture, then the state textures
  const SCALES = arch.scales || 1; // spacings 1, 2, 4, ... (rule.coarse_stencils); older rules have one
  const REGIONS = arch.regions || 0; // random regions' size (noise.regions); older rules have none
  const REGION_STREAM = -(1 << 20); // noise.REGION_STREAM
  const HG = Math.ceil(arch.width / 4); // hidden units in groups of four

  function say(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = kind || "";
  }

  function fatal(text) {
    say(text, "fatal");
    for (const el of document.querySelectorAll("button, input, select")) el.disabled = true;
    document.body.dataset.state = "unsupported";
  }

  function floats(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer); // little-endian, as written (every browser's platform is)
  }

  // noise.py: a 32-bit hash of (seed, stream, pixel). The key of a (seed, stream) is computed here,
  // with BigInt because seeds and streams may be any integers (streams of the hidden noise are < 0).
  function mix32(x) {
    x = Math.imul((x >>> 16) ^ x, 0x45d9f3b) >>> 0;
    x = Math.imul((x >>> 16) ^ x, 0x45d9f3b) >>> 0;
    return ((x >>> 16) ^ x) >>> 0;
  }
  function streamKey(seed, stream) {
    return mix32(Number((BigInt(seed) * 0x9e3779b1n + BigInt(stream) * 0x85ebca77n) & 0xffffffffn));
  }

  // ---- shaders ----------------------------------------------------------------------------------
  const VERTEX = `#version 300 es
void main() { // one triangle that covers the viewport
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

  const COMMON = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform ivec2 size;
uint mix32(uint x) {
  x = ((x >> 16u) ^ x) * 0x45D9F3Bu;
  x = ((x >> 16u) ^ x) * 0x45D9F3Bu;
  return (x >> 16u) ^ x;
}
uint hashAt(uint key, ivec2 p) { // noise.hash_at at pixel p (x, y)
  return mix32(mix32(uint(p.y) + key) ^ (uint(p.x) * 0x27D4EB2Du));
}
float uniformAt(uint key, ivec2 p) { // noise.position_uniform
  return float(hashAt(key, p) >> 8u) * (1.0 / 16777216.0);
}
uniform float levelGain; // state.Levels: the photo as the rule reads it
uniform vec3 levelOffset;
vec3 levelled(vec3 rgb) { return clamp(rgb * levelGain + levelOffset, 0.0, 1.0); }
`;
  const range = (n) => Array.from({ length: n }, (_, i) => i);
  const stateSamplers = range(T).map((t) => `uniform sampler2D s${t};`).join("\n");
  const outputs = range(T).map((t) => `layout(location = ${t}) out vec4 o${t};`).join("\n");

  // GLSL that returns a zero cell outside the image, where the padding is zeros.
  const OUTSIDE = arch.padding === "zeros" ? "if (any(lessThan(q, ivec2(0))) || any(greaterThanEqual(q, size))) return vec4(0.0);" : "";

  // The cell value of texture t (0: the levelled photo, as 2*rgb-1; then state texture t-1) at pixel q,
  // with the rule's padding outside the image (rule.pad_cells).
  function paddedFunction() {
    const index = {
      replicate: "return clamp(q, ivec2(0), size - 1);",
      reflect: "ivec2 period = max(2 * (size - 1), 1); q = abs(q) % period; return min(q, period - q);",
      circular: "return (q + size) % size;",
      zeros: "return q;",
    }[arch.padding];
    return `ivec2 padded(ivec2 q) { ${index} }`;
  }
  function cellFunctions() {
    const fns = range(1 + T).map((t) => {
      const read = t === 0 ? "vec4(levelled(texelFetch(src, padded(q), 0).rgb) * 2.0 - 1.0, 0.0)" : `texelFetch(s${t - 1}, padded(q), 0)`;
      return `vec4 cell${t}(ivec2 q) { ${OUTSIDE} return ${read}; }`;
    });
    return `${paddedFunction()}\n${fns.join("\n")}`;
  }

  // One step: rule.PERCEPTION_FILTERS on a 3x3 neighbourhood (and, with coarse perception, with
  // their taps d = 2, 4, ... apart on the smoothed copies), the MLP, the residual into channels 3+,
  // only where the fire mask fires (engine.py leaves the other cells exactly as they were).
  function stepShader() {
    const gather = range(SCALES).flatMap((k) => range(1 + T).map((t) => {
      const d = 1 << k;
      const n = (dx, dy) => (k === 0 ? `cell${t}(p + ivec2(${dx * d}, ${dy * d}))` : `level(l${k}, ${t}, p + ivec2(${dx * d}, ${dy * d}))`);
      const slot = k * (1 + T) + t;
      return `{
    vec4 a = ${n(-1, -1)}, b = ${n(0, -1)}, c = ${n(1, -1)};
    vec4 d = ${n(-1, 0)}, e = ${n(0, 0)}, f_ = ${n(1, 0)};
    vec4 g = ${n(-1, 1)}, h = ${n(0, 1)}, i = ${n(1, 1)};
    vec4 sx = ((c + 2.0 * f_ + i) - (a + 2.0 * d + g)) / 8.0;
    vec4 sy = ((g + 2.0 * h + i) - (a + 2.0 * b + c)) / 8.0;
    vec4 lap = ((a + c + g + i) + 2.0 * (b + d + f_ + h) - 12.0 * e) / 16.0;
    mat4 m = transpose(mat4(e, sx, sy, lap)); // m[k]: the four filters of channel k of this texture
    f[${4 * slot}] = m[0]; f[${4 * slot + 1}] = m[1]; f[${4 * slot + 2}] = m[2]; f[${4 * slot + 3}] = m[3];
  }`;
    }));
    const levelSamplers = range(SCALES - 1).map((k) => `uniform highp sampler2DArray l${k + 1};`).join("\n");
    const keep = range(T).map((t) => `o${t} = texelFetch(s${t}, p, 0);`).join(" ");
    const write = range(T).map((t) => `o${t} = texelFetch(s${t}, p, 0) + vec4(d[${4 * t}], d[${4 * t + 1}], d[${4 * t + 2}], d[${4 * t + 3}]);`);
    return `${COMMON}
#define S ${S * SCALES}
#define HG ${HG}
#define DOUT ${4 * T}
uniform sampler2D src;
${stateSamplers}
${levelSamplers}
uniform sampler2D w1; // (S, 4 HG): texel (s, u) = the weights of hidden unit u on the 4 filters of slot s
uniform sampler2D w2; // (HG, DOUT + 1): texel (j, o) = weights of output o on hidden units 4j..4j+3; row DOUT: bias of layer 1
uniform uint key;
uniform float rate;
${outputs}
${cellFunctions()}
${SCALES > 1 ? levelFunction() : ""}
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  if (rate < 1.0 && !(uniformAt(key, p) < rate)) { ${keep} return; }
  vec4 f[S];
  ${gather.join("\n  ")}
  vec4 hid[HG];
  for (int j = 0; j < HG; j++) {
    vec4 acc = texelFetch(w2, ivec2(j, DOUT), 0);
    for (int s = 0; s < S; s++) {
      vec4 x = f[s];
      acc += vec4(dot(texelFetch(w1, ivec2(s, 4 * j), 0), x), dot(texelFetch(w1, ivec2(s, 4 * j + 1), 0), x),
                  dot(texelFetch(w1, ivec2(s, 4 * j + 2), 0), x), dot(texelFetch(w1, ivec2(s, 4 * j + 3), 0), x));
    }
    hid[j] = max(acc, 0.0);
  }
  float d[DOUT];
  for (int o = 0; o < DOUT; o++) {
    float acc = 0.0;
    for (int j = 0; j < HG; j++) acc += dot(texelFetch(w2, ivec2(j, o), 0), hid[j]);
    d[o] = acc;
  }
  ${write.join("\n  ")}
}`;
  }

  // Layer t of a smoothed copy at pixel q, padded as the state is.
  function levelFunction() {
    return `vec4 level(highp sampler2DArray l, int t, ivec2 q) { ${OUTSIDE} return texelFetch(l, ivec3(padded(q), t), 0); }`;
  }

  // rule.smooth: layer t of the next smoothed copy, the [1,2,1] x [1,2,1] / 16 blur with taps `tap`
  // apart of texture t of the state (base) or of the previous copy.
  function smoothShader(base) {
    const read = base
      ? `uniform sampler2D src;\n${stateSamplers}\n${cellFunctions()}
vec4 at(ivec2 q) { ${range(1 + T).map((t) => `if (t == ${t}) return cell${t}(q);`).join(" ")} return vec4(0.0); }`
      : `uniform highp sampler2DArray prev;\n${paddedFunction()}\n${levelFunction()}\nvec4 at(ivec2 q) { return level(prev, t, q); }`;
    return `${COMMON}
uniform int t;
uniform int tap;
out vec4 o;
${read}
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec4 acc = vec4(0.0);
  for (int dy = -1; dy <= 1; dy++)
    for (int dx = -1; dx <= 1; dx++) acc += float((2 - abs(dx)) * (2 - abs(dy))) * at(p + ivec2(dx, dy) * tap);
  o = acc / 16.0;
}`;
  }

  // state.make_state: working RGB = the levelled photo, hidden channels = uniform noise in +-HIDDEN_NOISE;
  // with regions (arch.regions, their size), the first two hidden channels = noise.regions.
  function initShader() {
    const hidden = Math.max(1, arch.hidden_channels);
    const noise = (ch) => `(uniformAt(keys[${ch - 6}], p) * 2.0 - 1.0) * ${HIDDEN_NOISE.toFixed(6)}`;
    const value = (ch) => (ch < 6 ? `rgb[${ch - 3}]` : REGIONS && ch < 8 ? `way[${ch - 6}]` : ch < C ? noise(ch) : "0.0");
    const write = range(T).map((t) => `o${t} = vec4(${range(4).map((k) => value(3 + 4 * t + k)).join(", ")});`);
    const span = REGIONS * 16; // noise.SUBPIXEL
    const region = `uniform uint regionKeys[3]; // the points' rows and columns, and their directions
vec2 region(ivec2 p) { // noise.regions: the nearest of the points jittered one in each square, in exact integers
  ivec2 home = p / ${REGIONS}, centre = p * 16 + 8;
  int nearest = 0x7fffffff;
  float angle = 0.0;
  for (int dy = -1; dy <= 1; dy++)
    for (int dx = -1; dx <= 1; dx++) {
      ivec2 q = home + ivec2(dx, dy);
      ivec2 jitter = ivec2((hashAt(regionKeys[1], q) >> 18u) * ${span}u >> 14u, (hashAt(regionKeys[0], q) >> 18u) * ${span}u >> 14u);
      ivec2 d = q * ${span} + jitter - centre;
      int distance = d.x * d.x + d.y * d.y;
      if (distance < nearest) {
        nearest = distance;
        angle = uniformAt(regionKeys[2], q) * 6.2831855;
      }
    }
  return vec2(cos(angle), sin(angle));
}`;
    return `${COMMON}
uniform sampler2D src;
uniform uint keys[${hidden}];
${REGIONS ? region : ""}
${outputs}
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec3 rgb = levelled(texelFetch(src, p, 0).rgb) * 2.0 - 1.0;
  ${REGIONS ? "vec2 way = region(p);" : ""}
  ${write.join("\n  ")}
}`;
  }

  // The result as apply writes it: working RGB clamped to [0, 1], blended with the photo by strength
  // (apply.blend); left of `split` (a fraction of the width) the photo itself.
  const VIEW = `${COMMON}
uniform sampler2D src;
uniform sampler2D s0;
uniform float strength;
uniform float split;
uniform bool flip;
out vec4 colour;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  if (flip) p.y = size.y - 1 - p.y; // the canvas's row 0 is at the bottom
  vec3 source = texelFetch(src, p, 0).rgb;
  vec3 edited = clamp((texelFetch(s0, p, 0).xyz + 1.0) * 0.5, 0.0, 1.0);
  vec3 rgb = strength >= 1.0 ? edited : source + (edited - source) * strength;
  float x = float(p.x) + 0.5, line = split * float(size.x);
  if (x < line) rgb = source;
  if (split > 0.0 && split < 1.0 && abs(x - line) < 1.0) rgb = vec3(1.0);
  colour = vec4(rgb, 1.0);
}`;

  // ---- WebGL setup ------------------------------------------------------------------------------
  const canvas = $("canvas");
  const gl = canvas.getContext("webgl2", { antialias: false, alpha: false, depth: false, preserveDrawingBuffer: true });
  if (!gl) {
    fatal("This page needs WebGL2, which this browser does not offer (or it is turned off). Open it in a current Chrome, Edge, Firefox or Safari with hardware acceleration on.");
    return;
  }
  if (!gl.getExtension("EXT_color_buffer_float")) {
    fatal("This page needs float render targets (the WebGL2 extension EXT_color_buffer_float), which this GPU or browser does not offer, so the rule cannot run here. Try another browser or device.");
    return;
  }
  if (T > gl.getParameter(gl.MAX_DRAW_BUFFERS)) {
    fatal(`This rule has ${C} channels; this GPU can write only ${gl.getParameter(gl.MAX_DRAW_BUFFERS)} textures at once, too few for it (a rule with fewer hidden channels would run).`);
    return;
  }
  canvas.addEventListener("webglcontextlost", (e) => {
    e.preventDefault();
    pause();
    say("The GPU stopped this page's WebGL (too much work or memory for it). Reload the page, and try a smaller photo.", "error");
  });

  function compile(fragment) {
    const prog = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, VERTEX], [gl.FRAGMENT_SHADER, fragment]]) {
      const sh = gl.createShader(type);
      gl.shaderSource(sh, src);
      gl.compileShader(sh);
      if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(`shader: ${gl.getShaderInfoLog(sh)}`);
      gl.attachShader(prog, sh);
    }
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(`program: ${gl.getProgramInfoLog(prog)}`);
    const uniforms = {};
    for (let i = 0; i < gl.getProgramParameter(prog, gl.ACTIVE_UNIFORMS); i++) {
      const name = gl.getActiveUniform(prog, i).name.replace(/\[0\]$/, "");
      uniforms[name] = gl.getUniformLocation(prog, name);
    }
    return { prog, uniforms };
  }

  function texture(width, height, internal, format, type, pixels) {
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
    for (const p of [gl.TEXTURE_WRAP_S, gl.TEXTURE_WRAP_T]) gl.texParameteri(gl.TEXTURE_2D, p, gl.CLAMP_TO_EDGE);
    gl.texStorage2D(gl.TEXTURE_2D, 1, internal, width, height);
    if (pixels) gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, width, height, format, type, pixels);
    return tex;
  }

  // The weights as textures, laid out for the step shader (see its uniforms).
  function weightTextures() {
    const w1 = floats(data.w1), b1 = floats(data.b1), w2 = floats(data.w2);
    const slots = S * SCALES;
    const a = new Float32Array(slots * 4 * HG * 4); // texel (s, u) at (u * slots + s) * 4
    for (let u = 0; u < arch.width; u++) {
      for (let scale = 0; scale < SCALES; scale++) {
        for (let ch = 0; ch < C; ch++) {
          const s = scale * S + (ch < 3 ? ch : ch + 1); // slot 3 (the photo texture's alpha) is unused
          for (let k = 0; k < 4; k++) a[(u * slots + s) * 4 + k] = w1[u * 4 * C * SCALES + scale * 4 * C + 4 * ch + k];
        }
      }
    }
    const rows = 4 * T + 1;
    const b = new Float32Array(HG * rows * 4); // texel (j, o) at (o * HG + j) * 4
    for (let o = 0; o < OUTS; o++) for (let u = 0; u < arch.width; u++) b[o * HG * 4 + u] = w2[o * arch.width + u];
    for (let u = 0; u < arch.width; u++) b[4 * T * HG * 4 + u] = b1[u];
    return {
      w1: texture(slots, 4 * HG, gl.RGBA32F, gl.RGBA, gl.FLOAT, a),
      w2: texture(HG, rows, gl.RGBA32F, gl.RGBA, gl.FLOAT, b),
    };
  }

  let programs, weights;
  try {
    programs = { step: compile(stepShader()), init: compile(initShader()), view: compile(VIEW) };
    if (SCALES > 1) Object.assign(programs, { smoothBase: compile(smoothShader(true)), smoothLevel: compile(smoothShader(false)) });
    weights = weightTextures();
  } catch (err) {
    fatal(`This GPU could not build the rule's shaders (${err.message}).`);
    return;
  }
  gl.bindVertexArray(gl.createVertexArray());

  // ---- the photo and the state ------------------------------------------------------------------
  // sim: {width, height, src, sets: [[tex...], [tex...]], fbs: [fb, fb], current, steps, seed}
  let sim = null;
  let photoName = "photo";
  const seedValue = () => {
    const v = $("seed").value.trim();
    return /^-?\d+$/.test(v) ? BigInt(v) : 0n;
  };

  function framebuffer(textures) {
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    textures.forEach((tex, i) => gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0 + i, gl.TEXTURE_2D, tex, 0));
    gl.drawBuffers(textures.map((_, i) => gl.COLOR_ATTACHMENT0 + i));
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) === gl.FRAMEBUFFER_COMPLETE) return fb;
    gl.deleteFramebuffer(fb);
    return null;
  }

  function layerFramebuffer(tex, layer) {
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    gl.framebufferTextureLayer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, tex, 0, layer);
    gl.drawBuffers([gl.COLOR_ATTACHMENT0]);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) === gl.FRAMEBUFFER_COMPLETE) return fb;
    gl.deleteFramebuffer(fb);
    return null;
  }

  function freeSim(s) {
    if (!s) return;
    gl.deleteTexture(s.src);
    for (const set of s.sets) for (const tex of set) gl.deleteTexture(tex);
    for (const fb of s.fbs) gl.deleteFramebuffer(fb);
    for (const tex of s.levels3d) gl.deleteTexture(tex);
    for (const fbs of s.levelFbs) for (const fb of fbs) gl.deleteFramebuffer(fb);
  }

  // The GPU state for a bitmap, or null when the GPU cannot hold it.
  function allocate(bitmap) {
    const { width, height } = bitmap;
    for (let i = 0; i < 32 && gl.getError() !== gl.NO_ERROR; i++); // clear old errors (bounded: a lost context repeats one forever)
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    const s = { width, height, steps: 0, current: 0, sets: [], fbs: [], levels3d: [], levelFbs: [] };
    s.src = texture(width, height, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
    for (let k = 0; k < 2; k++) {
      s.sets.push(range(T).map(() => texture(width, height, gl.RGBA32F)));
      s.fbs.push(framebuffer(s.sets[k]));
    }
    for (let k = 1; k < SCALES; k++) {
      const tex = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D_ARRAY, tex);
      for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D_ARRAY, p, gl.NEAREST);
      gl.texStorage3D(gl.TEXTURE_2D_ARRAY, 1, gl.RGBA32F, width, height, 1 + T);
      s.levels3d.push(tex);
      s.levelFbs.push(range(1 + T).map((t) => layerFramebuffer(tex, t)));
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    if (gl.getError() !== gl.NO_ERROR || s.fbs.includes(null) || s.levelFbs.flat().includes(null)) {
      freeSim(s);
      return null;
    }
    s.levels = photoLevels(s);
    return s;
  }

  // state.photo_levels, measured on the photo as uploaded: every stride-th pixel of every stride-th row.
  function photoLevels(s) {
    if (!(arch.photo_contrast > 0)) return { gain: 1, offset: [0, 0, 0] }; // older rules read the photo as it is
    const stride = Math.max(1, Math.ceil(Math.sqrt((s.width * s.height) / LEVELS_PIXELS)));
    const fb = framebuffer([s.src]);
    const row = new Uint8Array(s.width * 4);
    const sum = [0, 0, 0], squares = [0, 0, 0];
    let n = 0;
    for (let y = 0; y < s.height; y += stride) {
      gl.readPixels(0, y, s.width, 1, gl.RGBA, gl.UNSIGNED_BYTE, row);
      for (let x = 0; x < s.width; x += stride, n++) {
        for (let c = 0; c < 3; c++) {
          const v = row[4 * x + c] / 255;
          sum[c] += v;
          squares[c] += v * v;
        }
      }
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.deleteFramebuffer(fb);
    const mean = sum.map((v) => v / n);
    const variance = mean.reduce((acc, m, c) => acc + Math.max(0, squares[c] / n - m * m), 0) / 3;
    const gain = arch.photo_contrast / Math.max(Math.sqrt(variance), MIN_CONTRAST);
    return { gain, offset: mean.map((m) => 0.5 - m * gain) };
  }

  function setLevels(p) {
    gl.uniform1f(p.uniforms.levelGain, sim.levels.gain);
    gl.uniform3fv(p.uniforms.levelOffset, sim.levels.offset);
  }

  // named: {uniform: texture}; `arrays` the names that are array textures.
  function bindTextures(prog, named, arrays = []) {
    Object.entries(named).forEach(([name, tex], unit) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(arrays.includes(name) ? gl.TEXTURE_2D_ARRAY : gl.TEXTURE_2D, tex);
      gl.uniform1i(prog.uniforms[name], unit);
    });
  }

  function stateTextures(set) {
    return Object.fromEntries(set.map((tex, t) => [`s${t}`, tex]));
  }

  function initState() {
    const p = programs.init;
    gl.useProgram(p.prog);
    bindTextures(p, { src: sim.src });
    gl.uniform2i(p.uniforms.size, sim.width, sim.height);
    setLevels(p);
    const seed = (sim.seed = seedValue());
    if (arch.hidden_channels > 0) gl.uniform1uiv(p.uniforms.keys, range(arch.hidden_channels).map((c) => streamKey(seed, -1 - c)));
    if (REGIONS) gl.uniform1uiv(p.uniforms.regionKeys, range(3).map((k) => streamKey(seed, REGION_STREAM - k)));
    gl.bindFramebuffer(gl.FRAMEBUFFER, sim.fbs[0]);
    gl.viewport(0, 0, sim.width, sim.height);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    sim.current = 0;
    sim.steps = 0;
  }

  // The smoothed copies the step reads (rule.coarse_stencils): copy k is copy k-1 (the state, for k = 1)
  // blurred with taps 2^(k-1) apart.
  function smoothLevels() {
    for (let k = 1; k < SCALES; k++) {
      const p = k === 1 ? programs.smoothBase : programs.smoothLevel;
      gl.useProgram(p.prog);
      if (k === 1) bindTextures(p, { src: sim.src, ...stateTextures(sim.sets[sim.current]) });
      else bindTextures(p, { prev: sim.levels3d[k - 2] }, ["prev"]);
      gl.uniform2i(p.uniforms.size, sim.width, sim.height);
      gl.uniform1i(p.uniforms.tap, 1 << (k - 1));
      setLevels(p);
      gl.viewport(0, 0, sim.width, sim.height);
      for (let t = 0; t <= T; t++) {
        gl.bindFramebuffer(gl.FRAMEBUFFER, sim.levelFbs[k - 1][t]);
        gl.uniform1i(p.uniforms.t, t);
        gl.drawArrays(gl.TRIANGLES, 0, 3);
      }
    }
  }

  function stepOnce() {
    smoothLevels();
    const p = programs.step;
    gl.useProgram(p.prog);
    const levels = Object.fromEntries(sim.levels3d.map((tex, k) => [`l${k + 1}`, tex]));
    bindTextures(p, { src: sim.src, w1: weights.w1, w2: weights.w2, ...stateTextures(sim.sets[sim.current]), ...levels }, Object.keys(levels));
    gl.uniform2i(p.uniforms.size, sim.width, sim.height);
    gl.uniform1ui(p.uniforms.key, streamKey(sim.seed, sim.steps)); // stream = the step's number, from 0
    gl.uniform1f(p.uniforms.rate, arch.fire_rate);
    setLevels(p);
    gl.bindFramebuffer(gl.FRAMEBUFFER, sim.fbs[1 - sim.current]);
    gl.viewport(0, 0, sim.width, sim.height);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    sim.current = 1 - sim.current;
    sim.steps += 1;
  }

  function drawView(split, flip) {
    const p = programs.view;
    gl.useProgram(p.prog);
    bindTextures(p, { src: sim.src, s0: sim.sets[sim.current][0] });
    gl.uniform2i(p.uniforms.size, sim.width, sim.height);
    gl.uniform1f(p.uniforms.strength, Number($("strength").value));
    gl.uniform1f(p.uniforms.split, split);
    gl.uniform1i(p.uniforms.flip, flip ? 1 : 0);
    gl.viewport(0, 0, sim.width, sim.height);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  function render() {
    if (!sim) return;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    drawView(Number($("compare").value), true);
    $("steps").textContent = String(sim.steps);
    $("strength-value").textContent = Number($("strength").value).toFixed(2);
  }

  async function usePhoto(bitmap, name) {
    const limit = Math.min(MAX_SIDE, gl.getParameter(gl.MAX_TEXTURE_SIZE), ...gl.getParameter(gl.MAX_VIEWPORT_DIMS));
    const notes = [];
    let side = Math.min(limit, Math.max(bitmap.width, bitmap.height));
    for (;;) {
      const scale = side / Math.max(bitmap.width, bitmap.height);
      let b = bitmap;
      if (scale < 1) {
        const w = Math.max(1, Math.round(bitmap.width * scale)), h = Math.max(1, Math.round(bitmap.height * scale));
        b = await createImageBitmap(bitmap, { resizeWidth: w, resizeHeight: h, resizeQuality: "high" });
      }
      const s = allocate(b);
      if (s) {
        if (scale < 1) notes.push(`scaled down from ${bitmap.width}×${bitmap.height} to ${s.width}×${s.height}, the most this page runs on this GPU`);
        pause();
        freeSim(sim);
        sim = s;
        break;
      }
      if (side <= 256) throw new Error("the GPU has not enough memory for the rule's state");
      side = Math.floor(side / 2);
    }
    photoName = name.replace(/\.[^.]*$/, "") || "photo";
    canvas.width = sim.width;
    canvas.height = sim.height;
    const zoom = Math.max(1, Math.floor(480 / Math.max(sim.width, sim.height))); // small photos shown larger, pixels sharp
    canvas.style.width = zoom > 1 ? `${sim.width * zoom}px` : ""; // else auto: max-width and max-height keep the aspect
    canvas.classList.toggle("small", zoom > 1);
    $("photo").textContent = `${name}, ${sim.width}×${sim.height}`;
    initState();
    render();
    say(notes.join("; "));
    document.body.dataset.state = "ready";
    document.body.dataset.photo = name;
  }

  async function openBlob(blob, name) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" });
    } catch {
      say(`${name}: not an image this browser can read; the current photo is kept.`, "error");
      return false;
    }
    if (Math.min(bitmap.width, bitmap.height) < MIN_SIDE) {
      say(`${name}: ${bitmap.width}×${bitmap.height} is too small (each side needs at least ${MIN_SIDE} pixels); the current photo is kept.`, "error");
      return false;
    }
    try {
      await usePhoto(bitmap, name);
    } catch (err) {
      say(`${name}: ${err.message}; the current photo is kept.`, "error");
      return false;
    }
    return true;
  }

  function openThumbnail() {
    return openBlob(new Blob([Uint8Array.from(atob(data.thumbnail), (ch) => ch.charCodeAt(0))], { type: "image/jpeg" }), "sample.jpg");
  }

  // ---- playing ----------------------------------------------------------------------------------
  let playing = false, owed = 0, frame = 0;
  const stopAt = () => Math.max(0, Math.floor(Number($("stopat").value) || 0));
  const atStop = () => stopAt() > 0 && sim.steps >= stopAt();

  function tick() {
    if (!playing || !sim) return;
    owed += Number($("speed").value);
    for (; owed >= 1 && !atStop(); owed--) stepOnce();
    render();
    if (atStop()) pause();
    else frame = requestAnimationFrame(tick);
  }
  function play() {
    if (!sim) return;
    if (atStop()) $("stopat").value = "0"; // playing on past the stop
    playing = true;
    owed = 0;
    $("play").textContent = "Pause";
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(tick);
  }
  function pause() {
    playing = false;
    cancelAnimationFrame(frame); // else a quick play after it would run two loops
    $("play").textContent = "Play";
  }
  function reset() {
    if (!sim) return;
    pause();
    initState();
    render();
  }

  // The result at full resolution: drawn on the canvas without the before|after split, saved, and
  // the view drawn again before the browser shows the canvas (toBlob takes its snapshot at once).
  function download() {
    if (!sim) return;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    drawView(0, true);
    canvas.toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `${photoName}-${data.name}.png`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
    }, "image/png");
    render();
  }

  // ---- controls ---------------------------------------------------------------------------------
  $("play").onclick = () => (playing ? pause() : play());
  $("step").onclick = () => {
    if (!sim) return;
    pause();
    stepOnce();
    render();
  };
  $("reset").onclick = reset;
  $("seed").onchange = () => sim && seedValue() !== sim.seed && reset(); // the noise and the fire masks depend on it
  $("strength").oninput = render;
  $("compare").oninput = render;
  $("download").onclick = download;
  $("thumbnail").onclick = openThumbnail;
  $("open").onclick = () => $("file").click();
  $("file").onchange = (e) => {
    const file = e.target.files[0];
    if (file) openBlob(file, file.name);
    e.target.value = "";
  };
  // A photo dropped anywhere on the page (a drop the page did not take would navigate away from it).
  const stage = $("stage");
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    stage.classList.add("drop");
  });
  document.addEventListener("dragleave", () => stage.classList.remove("drop"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("drop");
    const file = e.dataTransfer.files[0];
    if (file) openBlob(file, file.name);
  });
  document.addEventListener("keydown", (e) => {
    if (["INPUT", "SELECT", "BUTTON"].includes(e.target.tagName)) return; // a focused button takes space itself
    if (e.key === " ") {
      e.preventDefault();
      $("play").click();
    } else if (e.key === "ArrowRight") $("step").click();
  });

  // ---- the rule's metadata ----------------------------------------------------------------------
  function describe() {
    const m = data.metadata, rows = [];
    if (m.mode === "style") rows.push(["style image", m.style_image]);
    if (m.mode === "prompt") {
      rows.push(["prompt", (m.prompts || []).map(([text, w]) => (w === 1 ? text : `${text} (${w})`)).join(" · ")]);
      if (m.source_prompt) rows.push(["source prompt", m.source_prompt]);
    }
    if (m.default_steps) rows.push(["steps", `${m.default_steps} (ncaedit apply's default)`]);
    const trained = [m.preset && `preset ${m.preset}`, m.iterations_done && `${m.iterations_done} iterations`,
      m.train_seconds && `${m.train_seconds} s`, m.loss_net && `loss network ${m.loss_net}`].filter(Boolean);
    if (trained.length) rows.push(["trained", trained.join(", ")]);
    if (m.final_losses) rows.push(["final losses", Object.entries(m.final_losses).map(([k, v]) => `${k} ${Number(v).toPrecision(3)}`).join(", ")]);
    rows.push(["network", `${C} channels (${arch.hidden_channels} hidden), ${arch.width} hidden units, fire rate ${arch.fire_rate}, ${arch.padding} padding`]);
    if (data.source.file) rows.push(["rule file", `${data.source.file}, modified ${data.source.modified}`]);
    if (m.ncaedit_version) rows.push(["made with", `ncaedit ${m.ncaedit_version}`]);
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = String(v);
      $("meta").append(dt, dd);
    }
    $("meta-json").textContent = JSON.stringify(m, null, 2);
  }

  describe();
  $("stopat").value = String(data.metadata.default_steps || 32);
  // For scripts and tests (the page's own controls do the same): run n steps and wait for the GPU.
  window.ncaedit = {
    run(n) {
      for (let i = 0; i < n; i++) stepOnce();
      render();
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4)); // waits for the GPU, unlike gl.finish in Chrome
      return sim.steps;
    },
  };
  openThumbnail();
})();
