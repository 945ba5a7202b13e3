// The model side of the page: loads a tfvae decoder_*.tflite with LiteRT.js and runs
// its signatures. No DOM here, so that a test (or another page) can drive it alone.
//
// A tfvae .tflite holds the signatures `decode` (z [B, latent_dim] -> mean, ...) and
// `sample_from_noise` (eps [B, latent_dim] plus per-pixel noise -> mean, x); its inputs
// are noise rather than random ops so that a seed gives the same pictures everywhere
// (see tfvae/tflite_sampler.py, the Python twin of this file).

import { loadAndCompile, loadLiteRt, Tensor } from "@litertjs/core";

// Inputs drawn from U(0, 1); every other noise input is N(0, 1) (export.json "noise").
const UNIFORM_INPUTS = new Set(["uniform_noise", "component_noise"]);
export const LABELS = "labels"; // A conditional model's input: int32 class labels [B].

let runtime = null;

/**
 * Loads the LiteRT.js WebAssembly runtime once.
 * @param {string} wasmDir URL of the folder holding litert_wasm_*.js and .wasm.
 */
export function loadRuntime(wasmDir) {
  runtime ??= loadLiteRt(wasmDir);
  return runtime;
}

/**
 * Loads a decoder and the export.json written beside it by tfvae-export.
 * @param {string} modelUrl URL of a decoder_*.tflite.
 * @param {string} wasmDir URL of LiteRT.js's wasm folder.
 * @return {Promise<Decoder>}
 */
export async function loadDecoder(modelUrl, wasmDir) {
  await loadRuntime(wasmDir);
  const descriptionUrl = new URL("export.json", new URL(modelUrl, location.href));
  const response = await fetch(descriptionUrl);
  if (!response.ok) {
    throw new Error(`${descriptionUrl}: ${response.status} ${response.statusText}; ` +
      "export.json must lie beside the .tflite (tfvae-export writes both).");
  }
  const description = await response.json();
  const model = await fetch(modelUrl).then((r) => {
    if (!r.ok) throw new Error(`${modelUrl}: ${r.status} ${r.statusText}`);
    return r.arrayBuffer();
  });
  const compiled = await loadAndCompile(batchOfOne(new Uint8Array(model)), { accelerator: "wasm" });
  return new Decoder(compiled, description);
}

/**
 * A copy of a .tflite whose dynamic dimensions (shape_signature -1) are fixed at 1.
 *
 * tfvae's decoders take any batch size (their inputs' shape_signature is [-1, ...]);
 * LiteRT.js 2.5 cannot resize inputs and rejects every tensor against a -1, so the
 * page runs them one example at a time. Each tensor's `shape` already holds the 1;
 * only `shape_signature` (field 7 of the schema's Tensor table) changes, in place.
 * @param {Uint8Array} bytes A TFLite flatbuffer.
 * @return {Uint8Array}
 */
export function batchOfOne(bytes) {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  if (String.fromCharCode(...out.subarray(4, 8)) !== "TFL3") {
    throw new Error("not a .tflite file (no TFL3 identifier)");
  }
  // FlatBuffers: a table starts with the offset back to its vtable, whose entries
  // are the fields' offsets within the table (0: absent); references are relative.
  const field = (table, index) => {
    const vtable = table - view.getInt32(table, true);
    const entry = 4 + 2 * index;
    if (entry >= view.getUint16(vtable, true)) return null;
    const offset = view.getUint16(vtable + entry, true);
    return offset ? table + offset : null;
  };
  const vector = (at) => {
    const start = at + view.getUint32(at, true);
    return { length: view.getUint32(start, true), first: start + 4 };
  };
  const tables = (at) => {
    const { length, first } = vector(at);
    return Array.from({ length }, (_, i) => first + 4 * i + view.getUint32(first + 4 * i, true));
  };
  const MODEL_SUBGRAPHS = 2, SUBGRAPH_TENSORS = 0, TENSOR_SHAPE_SIGNATURE = 7;
  const root = view.getUint32(0, true);
  for (const subgraph of tables(field(root, MODEL_SUBGRAPHS))) {
    for (const tensor of tables(field(subgraph, SUBGRAPH_TENSORS))) {
      const signature = field(tensor, TENSOR_SHAPE_SIGNATURE);
      if (signature === null) continue;
      const { length, first } = vector(signature);
      for (let i = 0; i < length; i++) {
        if (view.getInt32(first + 4 * i, true) === -1) view.setInt32(first + 4 * i, 1, true);
      }
    }
  }
  return out;
}

/** One compiled decoder and its export.json. */
export class Decoder {
  constructor(model, description) {
    this.model = model;
    this.description = description;
    this.imageShape = description.image_shape; // [H, W] (or [H, W, C]).
    this.latentDim = description.latent_dim;
    this.pixels = this.imageShape.reduce((a, b) => a * b, 1);
    for (const name of ["decode", "sample_from_noise"]) {
      if (!(name in model.signatures)) {
        throw new Error(`the model has no "${name}" signature: is it a tfvae decoder?`);
      }
    }
  }

  /** Names and per-example shapes of a signature's inputs, from export.json. */
  inputs(signature) {
    const inputs = this.description.signatures[signature].inputs;
    return Object.entries(inputs).map(([name, spec]) => ({
      name,
      shape: spec.shape.slice(1), // Without the batch dimension.
      dtype: spec.dtype,
    }));
  }

  get conditional() {
    return this.inputs("decode").some((input) => input.name === LABELS);
  }

  /**
   * Runs one signature on a batch, one example at a time.
   *
   * The model was loaded with a batch of one (see `batchOfOne`), so every example is
   * one run.
   * @param {string} signature "decode" or "sample_from_noise".
   * @param {Object<string, Float32Array|Int32Array>} inputs Each [B, ...] flattened.
   * @param {number} batch B.
   * @return {Promise<Object<string, Float32Array>>} Each output [B, ...] flattened.
   */
  async run(signature, inputs, batch) {
    const specs = this.inputs(signature);
    const outputs = {};
    for (let b = 0; b < batch; b++) {
      const tensors = {};
      for (const { name, shape } of specs) {
        const size = shape.reduce((a, c) => a * c, 1);
        const row = inputs[name].subarray(b * size, (b + 1) * size);
        tensors[name] = new Tensor(row.slice(), [1, ...shape]);
      }
      let results;
      try {
        results = await this.model.run(signature, tensors);
      } finally {
        Object.values(tensors).forEach((tensor) => tensor.delete());
      }
      for (const [name, tensor] of Object.entries(results)) {
        const values = tensor.toTypedArray();
        outputs[name] ??= new Float32Array(batch * values.length);
        outputs[name].set(values, b * values.length);
        tensor.delete();
      }
    }
    return outputs;
  }

  /** E[x|z] for codes z: Float32Array [B * latent_dim] -> Float32Array [B * pixels]. */
  async decode(z, batch, labels = null) {
    const inputs = { z };
    if (this.conditional) inputs[LABELS] = labels ?? new Int32Array(batch);
    return (await this.run("decode", inputs, batch)).mean;
  }

  /** Seeded inputs for sample_from_noise, as tfvae-sample draws them (not the same numbers). */
  noise(batch, seed) {
    const random = new Random(seed);
    const inputs = {};
    for (const { name, shape } of this.inputs("sample_from_noise")) {
      if (name === LABELS) continue;
      const size = batch * shape.reduce((a, c) => a * c, 1);
      const draw = UNIFORM_INPUTS.has(name) ? () => random.uniform() : () => random.normal();
      inputs[name] = Float32Array.from({ length: size }, draw);
    }
    return inputs;
  }
}

/** A seeded generator: xorshift128+ for uniforms, Box-Muller for normals. */
export class Random {
  constructor(seed) {
    // splitmix64 spreads a small seed over the 128-bit state.
    let x = BigInt.asUintN(64, BigInt(seed));
    const next = () => {
      x = BigInt.asUintN(64, x + 0x9e3779b97f4a7c15n);
      let z = x;
      z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
      z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
      return z ^ (z >> 31n);
    };
    this.s0 = next();
    this.s1 = next();
    this.spare = null;
  }

  /** U(0, 1), never 0 (Box-Muller takes its log). */
  uniform() {
    let s1 = this.s0;
    const s0 = this.s1;
    this.s0 = s0;
    s1 = BigInt.asUintN(64, s1 ^ (s1 << 23n));
    this.s1 = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n);
    const bits = BigInt.asUintN(64, this.s1 + s0) >> 11n; // 53 bits.
    return (Number(bits) + 0.5) / 2 ** 53;
  }

  /** N(0, 1). */
  normal() {
    if (this.spare !== null) {
      const value = this.spare;
      this.spare = null;
      return value;
    }
    const radius = Math.sqrt(-2 * Math.log(this.uniform()));
    const angle = 2 * Math.PI * this.uniform();
    this.spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }
}

/**
 * The standard normal quantile function Phi^-1(p), for 0 < p < 1.
 *
 * Acklam's rational approximation (relative error below 1.2e-9); it maps a point
 * of the unit square to a code z, as in Kingma & Welling's Figure 4.
 */
export function normalQuantile(p) {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687,
    138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866,
    66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838,
    -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996,
    3.754408661907416];
  const low = 0.02425;
  let x;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - low) {
    const q = p - 0.5;
    const r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
      (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  return x;
}
