#!/usr/bin/env node
// bench_ort.js - onnxruntime-node reference for bench/run: forward latency at batch 1.
//
//   node bench/bench_ort.js MODEL.onnx [--threads T] [--reps N] [--input-size S]
//
// Loads the ONNX export of the same weights (input "input" [1,3,S,S] in pixel space 0..255,
// normalization inside the graph), one session with intraOpNumThreads T (interOp 1, sequential
// execution, all graph optimizations), runs one warm-up and N timed forwards of the same random
// image, and prints one JSON object: {"forward_batch1_ms_median": ..., "forward_ms": [...], ...}.
// Exit status: 0 on success, 1 when onnxruntime-node cannot be loaded or the run fails.
'use strict';

function parseArgs(argv) {
	const o = { model: null, threads: 2, reps: 20, inputSize: 224 };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const next = () => {
			if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
			return argv[++i];
		};
		if (a === '--threads') o.threads = parseInt(next(), 10);
		else if (a === '--reps') o.reps = parseInt(next(), 10);
		else if (a === '--input-size') o.inputSize = parseInt(next(), 10);
		else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
		else o.model = a;
	}
	if (!o.model) throw new Error('usage: bench_ort.js MODEL.onnx [--threads T] [--reps N] [--input-size S]');
	return o;
}

function median(xs) {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.floor(s.length / 2)];
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	const ort = require('onnxruntime-node');
	const t0 = process.hrtime.bigint();
	const session = await ort.InferenceSession.create(o.model, {
		intraOpNumThreads: o.threads,
		interOpNumThreads: 1,
		executionMode: 'sequential',
		graphOptimizationLevel: 'all',
	});
	const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
	const S = o.inputSize;
	const data = new Float32Array(3 * S * S);
	let seed = 1;
	for (let i = 0; i < data.length; i++) {
		seed = (seed * 1103515245 + 12345) % 2147483648;
		data[i] = seed % 256;
	}
	const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, [1, 3, S, S]) };
	await session.run(feeds); // warm up
	const times = [];
	for (let r = 0; r < o.reps; r++) {
		const t = process.hrtime.bigint();
		await session.run(feeds);
		times.push(Number(process.hrtime.bigint() - t) / 1e6);
	}
	const out = {
		runtime: 'onnxruntime-node',
		version: require('onnxruntime-node/package.json').version,
		threads: o.threads,
		input_size: S,
		reps: o.reps,
		load_ms: loadMs,
		forward_batch1_ms_median: median(times),
		forward_ms: times,
	};
	process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
	process.stderr.write(`bench_ort: ${e && e.message ? e.message : e}\n`);
	process.exit(1);
});
