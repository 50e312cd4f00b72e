// ort-run.js runs an ONNX model with ONNX Runtime's own Node API
// (onnxruntime-node, resolved through NODE_PATH) on raw tensors, for the
// parity tests and the benchmark of package ortnode:
//
//   node ort-run.js MODEL H W IMAGE MASK OUT [RUNS]
//
// IMAGE and MASK are little-endian float32 files of [1,3,H,W] and
// [1,1,H,W], fed to the model's first and second inputs; the first output
// is written to OUT the same way. With RUNS > 0 the session runs that many
// more times and the line "run_ms <min> <mean>" reports the time of
// session.run alone. One CPU session, default options (those of the Go
// binding's plain session), one intra-op thread count chosen by the runtime.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function readF32(path, n) {
  const b = fs.readFileSync(path);
  if (b.length !== 4 * n) throw new Error(`${path}: ${b.length} bytes, want ${4 * n}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = b.readFloatLE(4 * i);
  return out;
}

async function main() {
  const [model, hs, ws, imagePath, maskPath, outPath, runsArg] = process.argv.slice(2);
  if (!outPath) throw new Error('usage: ort-run.js MODEL H W IMAGE MASK OUT [RUNS]');
  const h = Number(hs), w = Number(ws), runs = Number(runsArg || 0);
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', readF32(imagePath, 3 * h * w), [1, 3, h, w]);
  feeds[session.inputNames[1]] = new ort.Tensor('float32', readF32(maskPath, h * w), [1, 1, h, w]);
  const results = await session.run(feeds);
  const out = results[session.outputNames[0]];
  const buf = Buffer.alloc(4 * out.data.length);
  for (let i = 0; i < out.data.length; i++) buf.writeFloatLE(out.data[i], 4 * i);
  fs.writeFileSync(outPath, buf);
  console.log(`inputs ${session.inputNames.join(',')} outputs ${session.outputNames.join(',')} dims ${out.dims.join('x')}`);
  if (runs > 0) {
    let min = Infinity, sum = 0;
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      min = Math.min(min, ms);
      sum += ms;
    }
    console.log(`run_ms ${min} ${sum / runs}`);
  }
}

main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
