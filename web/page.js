// The page: a grid of samples from seeded noise and, for a 2-D latent space, a point
// to drag over the latent plane. The model side is sampler.js.
//
// `?model=URL` picks the decoder_*.tflite (export.json must lie beside it); without
// it, the <meta name="tfvae-model"> of index.html. `window.tfvaePage` is what a test
// drives: see the object at the end of `main`.

import { loadDecoder, normalQuantile } from "./sampler.js";

const GRID = 64; // Samples in the grid.
const ZOOM = 2; // CSS pixels per image pixel in the grid.
const PLANE_STEPS = 15; // The latent plane's background: a PLANE_STEPS^2 manifold.
const FACE_ZOOM = 8;

const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;

function modelUrl() {
  return new URLSearchParams(location.search).get("model") ?? meta("tfvae-model");
}

function showError(error) {
  const status = $("status");
  status.classList.add("error");
  status.textContent = `Could not load the model ${modelUrl()}:\n${error.message ?? error}\n` +
    "Serve this folder with `python -m http.server` (a file:// page cannot fetch), and " +
    "give a decoder written by tfvae-export with ?model=path/to/decoder_float32.tflite.";
}

/**
 * Draws images into a canvas at one canvas pixel per image pixel, in a grid.
 * @param {HTMLCanvasElement} canvas
 * @param {Float32Array} images [N, H, W] or [N, H, W, C] (C = 1 or 3), in [0, 1].
 * @param {number[]} shape The image shape, [H, W] or [H, W, C].
 * @param {number} cols Images per row.
 * @param {number} gap Pixels between images (white).
 */
function drawGrid(canvas, images, shape, cols, gap = 1) {
  const [height, width, channels = 1] = shape;
  const pixels = height * width * channels;
  const count = images.length / pixels;
  const rows = Math.ceil(count / cols);
  canvas.width = cols * (width + gap) + gap;
  canvas.height = rows * (height + gap) + gap;
  const context = canvas.getContext("2d");
  const picture = context.createImageData(canvas.width, canvas.height);
  picture.data.fill(255);
  for (let n = 0; n < count; n++) {
    const top = gap + Math.floor(n / cols) * (height + gap);
    const left = gap + (n % cols) * (width + gap);
    for (let i = 0; i < height; i++) {
      for (let j = 0; j < width; j++) {
        const at = 4 * ((top + i) * canvas.width + left + j);
        for (let c = 0; c < 3; c++) {
          const value = images[n * pixels + (i * width + j) * channels + (channels === 3 ? c : 0)];
          picture.data[at + c] = Math.round(255 * Math.min(1, Math.max(0, value)));
        }
      }
    }
  }
  context.putImageData(picture, 0, 0);
  return picture;
}

/** Grey levels (the red channel) of a canvas, row by row. */
function canvasGrey(canvas) {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  return Array.from({ length: data.length / 4 }, (_, i) => data[4 * i]);
}

function scale(canvas, zoom) {
  canvas.style.width = `${canvas.width * zoom}px`;
  canvas.style.height = `${canvas.height * zoom}px`;
}

/** Codes z = loc + scale * Phi^-1(u) of the prior, for a point u of the unit square. */
function codeAt(decoder, u) {
  const prior = decoder.description.prior ?? {};
  const loc = prior.loc ?? [0, 0];
  const spread = prior.scale ?? [1, 1];
  return u.map((p, i) => loc[i] + spread[i] * normalQuantile(p));
}

async function drawSamples(decoder) {
  const seed = Number($("seed").value) || 0;
  const inputs = decoder.noise(GRID, seed);
  if (decoder.conditional) inputs.labels = new Int32Array(GRID).fill(Number($("label").value));
  const start = performance.now();
  const outputs = await decoder.run("sample_from_noise", inputs, GRID);
  const seconds = (performance.now() - start) / 1000;
  const images = $("draws").checked ? outputs.x : outputs.mean;
  drawGrid($("samples"), images, decoder.imageShape, Math.ceil(Math.sqrt(GRID)));
  scale($("samples"), ZOOM);
  $("timing").textContent = `${GRID} samples in ${(1000 * seconds).toFixed(1)} ms ` +
    `(${((1000 * seconds) / GRID).toFixed(3)} ms a sample, one run each, LiteRT.js on WebAssembly).`;
}

/** The latent plane: a manifold in the background, a draggable point, the face at it. */
async function setUpPlane(decoder) {
  const plane = $("plane");
  const n = PLANE_STEPS;
  const codes = new Float32Array(2 * n * n);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      // Row 0 at the top is the largest z_2; cell centres avoid Phi^-1(0).
      const z = codeAt(decoder, [(col + 0.5) / n, 1 - (row + 0.5) / n]);
      codes.set(z, 2 * (row * n + col));
    }
  }
  const background = drawGrid(plane, await decoder.decode(codes, n * n), decoder.imageShape, n, 0);
  scale(plane, 1.2);
  let point = [0.5, 0.5];

  async function dragTo(u) {
    point = u.map((p) => Math.min(0.999, Math.max(0.001, p)));
    const z = codeAt(decoder, point);
    const mean = await decoder.decode(Float32Array.from(z), 1);
    drawGrid($("face"), mean, decoder.imageShape, 1, 0);
    scale($("face"), FACE_ZOOM);
    const context = plane.getContext("2d");
    context.putImageData(background, 0, 0);
    context.beginPath();
    context.arc(point[0] * plane.width, (1 - point[1]) * plane.height, 4, 0, 2 * Math.PI);
    context.fillStyle = "#d22";
    context.fill();
    $("z").textContent = `z = (${z.map((v) => v.toFixed(2)).join(", ")})`;
    return { u: point, z, mean: Array.from(mean) };
  }

  // One decode at a time, in the order of the pointer's moves: the face shown is
  // always the last point's.
  let queue = Promise.resolve();
  const onPointer = (event) => {
    if (event.type !== "pointerdown" && !(event.buttons & 1)) return;
    const box = plane.getBoundingClientRect();
    const u = [(event.clientX - box.left) / box.width, 1 - (event.clientY - box.top) / box.height];
    queue = queue.then(() => dragTo(u));
  };
  plane.addEventListener("pointerdown", onPointer);
  plane.addEventListener("pointermove", onPointer);
  await dragTo(point);
  $("latent-section").hidden = false;
  return {
    dragTo,
    /** The point u in the unit square, once every move so far is drawn. */
    point: async () => {
      await queue;
      return point;
    },
  };
}

function describe(decoder, url) {
  const d = decoder.description;
  const condition = d.condition ? `, conditional on ${d.condition.num_classes} classes` : "";
  $("about").textContent = `${url.split("/").pop()}: ${d.likelihood} decoder of ` +
    `${d.image_shape.join("x")} images from a ${d.latent_dim}-dimensional code, ` +
    `${d.prior?.name ?? "standard normal"} prior${condition}.`;
}

function setUpLabels(decoder) {
  if (!decoder.conditional) return;
  const classes = decoder.description.condition?.num_classes ?? 10;
  $("label").innerHTML = Array.from({ length: classes }, (_, k) => `<option>${k}</option>`).join("");
  $("label-choice").hidden = false;
}

async function main() {
  const url = modelUrl();
  const decoder = await loadDecoder(url, meta("litert-wasm"));
  describe(decoder, url);
  setUpLabels(decoder);
  $("samples-section").hidden = false;
  await drawSamples(decoder);
  for (const id of ["seed", "draws", "label"]) $(id).addEventListener("change", () => drawSamples(decoder));
  $("resample").addEventListener("click", () => {
    $("seed").value = Number($("seed").value) + 1;
    drawSamples(decoder);
  });
  const plane = decoder.latentDim === 2 ? await setUpPlane(decoder) : null;
  $("status").textContent = "Ready: every picture here was computed in this browser.";
  return {
    decoder,
    plane,
    /** Runs a signature on plain arrays (JSON in, JSON out). */
    async run(signature, inputs, batch) {
      const typed = Object.fromEntries(Object.entries(inputs).map(([name, values]) => [
        name, name === "labels" ? Int32Array.from(values) : Float32Array.from(values)]));
      const outputs = await decoder.run(signature, typed, batch);
      return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, Array.from(v)]));
    },
    canvasGrey: (id) => canvasGrey($(id)),
    /** The noise the grid of `seed` was drawn from, as plain arrays. */
    noise: (batch, seed) => Object.fromEntries(
      Object.entries(decoder.noise(batch, seed)).map(([k, v]) => [k, Array.from(v)])),
    normalQuantile: (ps) => ps.map(normalQuantile),
    /** Milliseconds a sample: `repeats` grids of `batch`, the fastest. */
    async timeSampling(batch = GRID, repeats = 5) {
      const inputs = decoder.noise(batch, 0);
      if (decoder.conditional) inputs.labels = new Int32Array(batch);
      let best = Infinity;
      for (let r = 0; r < repeats; r++) {
        const start = performance.now();
        await decoder.run("sample_from_noise", inputs, batch);
        best = Math.min(best, (performance.now() - start) / batch);
      }
      return best;
    },
  };
}

const ready = main();
ready.catch(showError);
window.tfvaePage = { ready };
