#!/usr/bin/env node
// conformance.js - run igserve and check that it answers what openapi.yaml says.
//
// usage: node conformance.js OPENAPI_YAML IMAGE_PNG IGSERVE [serve flags...]
//
// Starts `IGSERVE serve --host 127.0.0.1 --port 0 --max-body-bytes 1M [flags]`, sends one
// request per case below and checks, for each answer, that its status is declared for the
// operation, its Content-Type is one the document lists for that status, the headers the
// document declares are present, and the body validates against the declared schema. Every
// documented option is also sent once at its documented default, as a query parameter and as
// a form field, and must be accepted. Exit status 0 when every case passed, 1 otherwise, 2 when
// the server could not be started.
'use strict';

const fs = require('fs');
const http = require('http');
const { spawn } = require('child_process');
const YAML = require('yaml');
const Ajv = require('ajv');

const [specPath, imagePath, binary, ...serveFlags] = process.argv.slice(2);
if (!binary) {
	console.error('usage: node conformance.js OPENAPI_YAML IMAGE_PNG IGSERVE [serve flags...]');
	process.exit(2);
}
const specText = fs.readFileSync(specPath, 'utf8');
const spec = YAML.parse(specText);
const image = fs.readFileSync(imagePath);

// ---- the document as JSON Schema ----

const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addFormat('byte', /^[A-Za-z0-9+/]*={0,2}$/);
ajv.addFormat('binary', true);
ajv.addSchema({ ...spec, $id: 'openapi' });

function pointer(ref) {
	return ref.replace(/^#\//, '').split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}
function escape(key) {
	return key.replace(/~/g, '~0').replace(/\//g, '~1');
}
// Follow $refs; returns [object, its JSON pointer in the document].
function resolve(obj, where) {
	while (obj && obj.$ref) {
		where = obj.$ref.slice(1);
		obj = pointer(obj.$ref).reduce((o, k) => o[k], spec);
	}
	return [obj, where];
}

const validators = new Map();
function validatorAt(where) {
	if (!validators.has(where))
		validators.set(where, ajv.compile({ $ref: 'openapi#' + where }));
	return validators.get(where);
}

// Keys of `value` the schema at `where` does not document (ajv lets them pass: the schemas do not
// forbid extra properties, so that clients accept extensions; the document should still list them).
function undocumented(value, schema, at, out) {
	schema = resolve(schema)[0];
	if (!schema || value === null || typeof value !== 'object') return out;
	if (Array.isArray(value)) {
		if (schema.items) value.forEach((v, i) => undocumented(v, schema.items, `${at}/${i}`, out));
		return out;
	}
	const props = {};
	const collect = (s) => {
		s = resolve(s)[0];
		Object.assign(props, s.properties || {});
		(s.allOf || []).forEach(collect);
	};
	collect(schema);
	const open = schema.additionalProperties !== undefined;
	for (const [key, v] of Object.entries(value)) {
		if (props[key]) undocumented(v, props[key], `${at}/${key}`, out);
		else if (!open) out.push(`${at}/${key} is not in the document`);
	}
	return out;
}

// ---- HTTP ----

function request(port, { method = 'GET', path, headers = {}, body = null, expectContinue = false }) {
	return new Promise((resolvePromise, reject) => {
		const h = { ...headers };
		if (body) h['Content-Length'] = body.length;
		if (expectContinue) h.Expect = '100-continue';
		const req = http.request({ host: '127.0.0.1', port, method, path, headers: h }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => resolvePromise({ status: res.statusCode, headers: res.headers,
				body: Buffer.concat(chunks) }));
		});
		req.on('error', reject);
		req.setTimeout(60000, () => req.destroy(new Error('timed out after 60 s')));
		if (body && expectContinue)
			req.on('continue', () => req.end(body));
		else
			req.end(body || undefined);
	});
}

function multipart(fields, file) {
	const boundary = 'igserveconformance' + Date.now();
	const parts = [];
	for (const [name, value] of Object.entries(fields))
		parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`));
	if (file)
		parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="image.png"\r\nContent-Type: image/png\r\n\r\n`),
			file, Buffer.from('\r\n'));
	parts.push(Buffer.from(`--${boundary}--\r\n`));
	return { body: Buffer.concat(parts), type: `multipart/form-data; boundary=${boundary}` };
}

// text/event-stream -> [{event, data}]
function parseEvents(text) {
	return text.split(/\n\n/).filter((b) => b.trim()).map((block) => {
		const ev = { event: 'message', data: '' };
		for (const line of block.split('\n')) {
			if (line.startsWith('event:')) ev.event = line.slice(6).trim();
			else if (line.startsWith('data:')) ev.data += line.slice(5).trim();
		}
		return ev;
	});
}

// ---- checking one answer against the document ----

// Problems with `res` as the answer of operation `op` ([path, method]) with `status`.
function check(op, res, status) {
	const problems = [];
	if (res.status !== status)
		problems.push(`status ${res.status}, expected ${status}: ${res.body.toString().slice(0, 300)}`);
	const operation = spec.paths[op[0]] && spec.paths[op[0]][op[1]];
	if (!operation)
		return problems.concat(`${op[1].toUpperCase()} ${op[0]} is not in the document`);
	const declared = operation.responses[String(res.status)];
	if (!declared)
		return problems.concat(`status ${res.status} is not declared for ${op[1].toUpperCase()} ${op[0]}`);
	const [response, where] = resolve(declared,
		`/paths/${escape(op[0])}/${op[1]}/responses/${res.status}`);
	for (const name of Object.keys(response.headers || {}))
		if (!(name.toLowerCase() in res.headers))
			problems.push(`header ${name} is declared but missing`);
	const type = (res.headers['content-type'] || '').split(';')[0].trim();
	const content = response.content || {};
	if (!(type in content))
		return problems.concat(`Content-Type '${type}' is not one of ${Object.keys(content).join(', ')}`);
	if (type === 'application/json') {
		let doc;
		try {
			doc = JSON.parse(res.body.toString());
		} catch (e) {
			return problems.concat(`body is not JSON: ${e.message}`);
		}
		const validate = validatorAt(`${where}/content/${escape(type)}/schema`);
		if (!validate(doc))
			problems.push(...validate.errors.map((e) => `body${e.instancePath} ${e.message}`));
		const schema = pointer('#' + `${where}/content/${escape(type)}/schema`).reduce((o, k) => o[k], spec);
		undocumented(doc, schema, 'body', problems);
		res.json = doc;
	}
	return problems;
}

// ---- the cases ----

function defaultValue(param) {
	const s = param.schema;
	if (s.default !== undefined) return String(s.default);
	if (s.example !== undefined) return String(s.example);
	if (s.enum) return s.enum[0];
	if (s.oneOf) return s.oneOf.find((o) => o.enum).enum[0];
	if (s.type === 'array') return s.items.enum[0];
	return String(s.minimum !== undefined ? s.minimum : 0);
}
function documentedOptions(path) {
	return spec.paths[path].post.parameters.map((p) => resolve(p)[0])
		.filter((p) => p.in === 'query')
		.map((p) => [p.name, defaultValue(p)]);
}
function query(pairs) {
	return '?' + pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

const png = { 'Content-Type': 'image/png' };
const form = (fields) => {
	const m = multipart(fields, image);
	return { headers: { 'Content-Type': m.type }, body: m.body };
};
const predict = ['/predict', 'post'];
const attribute = ['/attribute', 'post'];
const errorCode = (code) => (res) =>
	res.json && res.json.error.code === code ? [] : [`error code is not '${code}'`];

const cases = [
	['GET /healthz', ['/healthz', 'get'], 200, { path: '/healthz' }],
	['GET /readyz', ['/readyz', 'get'], 200, { path: '/readyz' }],
	['GET /metrics', ['/metrics', 'get'], 200, { path: '/metrics' },
		(res) => (/^# (HELP|TYPE) /m.test(res.body.toString()) ? [] : ['no Prometheus HELP/TYPE line'])],
	['GET /v1/model', ['/v1/model', 'get'], 200, { path: '/v1/model' }],
	['GET /openapi.yaml', ['/openapi.yaml', 'get'], 200, { path: '/openapi.yaml' },
		(res) => (res.body.toString() === specText ? [] : ['differs from the openapi.yaml checked'])],
	['GET /', ['/', 'get'], 200, { path: '/' }],
	['GET /app.js', ['/app.js', 'get'], 200, { path: '/app.js' }],
	['GET /app.css', ['/app.css', 'get'], 200, { path: '/app.css' }],
	['POST /predict multipart, top_k as a form field', predict, 200,
		{ method: 'POST', path: '/predict', ...form({ top_k: '3' }) },
		(res) => (res.json.predictions.length <= 3 ? [] : ['more than top_k predictions'])],
	['POST /predict raw image/png', predict, 200,
		{ method: 'POST', path: '/predict?top_k=2&resize=stretch', headers: png, body: image }],
	['POST /predict, every documented option at its default, in the query', predict, 200,
		{ method: 'POST', path: '/predict' + query(documentedOptions('/predict')), headers: png, body: image }],
	['POST /attribute, every documented option at its default, in the query', attribute, 200,
		{ method: 'POST', path: '/attribute' + query(documentedOptions('/attribute')), headers: png, body: image }],
	['POST /attribute, every documented option at its default, as form fields', attribute, 200,
		{ method: 'POST', path: '/attribute', ...form(Object.fromEntries(documentedOptions('/attribute'))) }],
	['POST /attribute all heatmaps, raw npy, path maps', attribute, 200,
		{ method: 'POST', path: '/attribute?steps=4&heatmaps=all&raw=npy&path_maps=true', headers: png, body: image },
		(res) => {
			const p = [];
			const maps = Object.keys(res.json.heatmaps).sort().join(',');
			if (maps !== 'alpha_scaling,channel_b,channel_b_deviation,channel_g,channel_g_deviation,channel_r,channel_r_deviation,deviation,magnitude,masked_image,normalized,overlay,overlay_full')
				p.push(`heatmaps=all gave ${maps}`);
			if (!res.json.attributions_npy) p.push('raw=npy gave no attributions_npy');
			if (!res.json.path.every((pt) => pt.map)) p.push('path_maps=true gave a path point without map');
			return p;
		}],
	['POST /attribute path_views=all, a channel deviation map', attribute, 200,
		{ method: 'POST', path: '/attribute?steps=3&heatmaps=channel_g_deviation&path_views=all', headers: png, body: image },
		(res) => {
			const p = [];
			if (Object.keys(res.json.heatmaps).join(',') !== 'channel_g_deviation')
				p.push(`heatmaps=channel_g_deviation gave ${Object.keys(res.json.heatmaps)}`);
			if (!res.json.path.every((pt) => pt.map && pt.step_normalized && pt.step_deviation))
				p.push('path_views=all gave a path point without map, step_normalized or step_deviation');
			return p;
		}],
	['POST /attribute tolerance, trapezoid, blur baseline, probability', attribute, 200,
		{ method: 'POST', path: '/attribute?method=riemann_trapezoid&steps=4&tolerance=0.5&max_steps=16&baseline=blur&output=probability&heatmaps=none', headers: png, body: image }],
	['POST /attribute several targets, logprob, faithfulness', attribute, 200,
		{ method: 'POST', path: '/attribute?targets=top2&steps=4&output=logprob&raw=npy&heatmaps=magnitude&faithfulness=deletion,insertion&faithfulness_steps=4', headers: png, body: image },
		(res) => {
			const p = [];
			if (!res.json.attributions || res.json.attributions.length !== 2) p.push('targets=top2 gave no two attributions');
			if (!res.json.faithfulness || res.json.faithfulness.deletion.length !== 5) p.push('faithfulness_steps=4 gave no 5-point deletion curve');
			if (!res.json.path.every((pt) => typeof pt.logprob === 'number')) p.push('output=logprob gave a path point without logprob');
			return p;
		}],
	['POST /attribute saliency with SmoothGrad', attribute, 200,
		{ method: 'POST', path: '/attribute?method=saliency&smoothgrad=vargrad&smoothgrad_samples=2&heatmaps=magnitude', headers: png, body: image }],
	['POST /attribute text/event-stream', attribute, 200,
		{ method: 'POST', path: '/attribute?steps=8&heatmaps=none', headers: { ...png, Accept: 'text/event-stream' }, body: image },
		(res) => {
			const events = parseEvents(res.body.toString());
			const p = [];
			const last = events[events.length - 1];
			if (!last || last.event !== 'result') return ['the stream does not end with a result event'];
			for (const ev of events.slice(0, -1)) {
				const d = JSON.parse(ev.data);
				if (ev.event !== 'progress' || !Number.isInteger(d.points_done) || !Number.isInteger(d.points_total) ||
					!(d.relative_error === null || typeof d.relative_error === 'number'))
					p.push(`unexpected event ${ev.event} ${ev.data}`);
			}
			const validate = validatorAt('/components/schemas/AttributeResponse');
			const result = JSON.parse(last.data);
			if (!validate(result))
				p.push(...validate.errors.map((e) => `result${e.instancePath} ${e.message}`));
			undocumented(result, { $ref: '#/components/schemas/AttributeResponse' }, 'result', p);
			return p;
		}],
	['400: top_k=0', predict, 400,
		{ method: 'POST', path: '/predict?top_k=0', headers: png, body: image }, errorCode('bad_option')],
	['400: unknown option', attribute, 400,
		{ method: 'POST', path: '/attribute?no_such_option=1', headers: png, body: image }, errorCode('bad_option')],
	['404: unknown path', ['/', 'get'], 404, { path: '/no/such/path' }, errorCode('not_found')],
	['405: GET /predict', predict, 405, { path: '/predict' }, errorCode('method_not_allowed')],
	['405: POST /healthz', ['/healthz', 'get'], 405,
		{ method: 'POST', path: '/healthz', headers: png, body: image }, errorCode('method_not_allowed')],
	['413: body over --max-body-bytes', predict, 413,
		{ method: 'POST', path: '/predict', headers: png, body: Buffer.alloc(1536 * 1024), expectContinue: true },
		errorCode('payload_too_large')],
	['415: text/plain body', predict, 415,
		{ method: 'POST', path: '/predict', headers: { 'Content-Type': 'text/plain' }, body: Buffer.from('hello') },
		errorCode('unsupported_media_type')],
	['422: PNG that does not decode', predict, 422,
		{ method: 'POST', path: '/predict', headers: png, body: Buffer.concat([image.subarray(0, 40), Buffer.alloc(64)]) },
		errorCode('image_decode')],
	['504: deadline_ms=1', attribute, 504,
		{ method: 'POST', path: '/attribute?steps=4096&deadline_ms=1&heatmaps=none', headers: png, body: image },
		errorCode('deadline_exceeded')],
];

// ---- running the server ----

function startServer() {
	return new Promise((resolvePromise, reject) => {
		const args = ['serve', '--host', '127.0.0.1', '--port', '0', '--workers', '1',
			'--max-body-bytes', '1M', ...serveFlags];
		const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
		let log = '';
		const timer = setTimeout(() => reject(new Error('no "listening" log line in 30 s:\n' + log)), 30000);
		child.on('exit', (code) => reject(new Error(`igserve exited with ${code}:\n${log}`)));
		child.stderr.on('data', (d) => {
			log += d;
			for (const line of log.split('\n')) {
				try {
					const ev = JSON.parse(line);
					if (ev.event === 'listening') {
						clearTimeout(timer);
						resolvePromise({ child, port: ev.port });
					}
				} catch (e) { /* not a JSON line yet */ }
			}
		});
	});
}

async function main() {
	let server;
	try {
		server = await startServer();
	} catch (e) {
		console.error('conformance: ' + e.message);
		process.exit(2);
	}
	const { child, port } = server;
	child.removeAllListeners('exit');
	for (let i = 0; i < 300; i++) {
		const r = await request(port, { path: '/readyz' }).catch(() => null);
		if (r && r.status === 200) break;
		await new Promise((ok) => setTimeout(ok, 100));
	}
	let failed = 0;
	for (const [name, op, status, req, extra] of cases) {
		let problems;
		try {
			const res = await request(port, req);
			problems = check(op, res, status);
			if (!problems.length && extra) problems = extra(res);
		} catch (e) {
			problems = [e.message];
		}
		if (problems.length) {
			failed++;
			console.log(`FAIL ${name}`);
			for (const p of problems.slice(0, 10)) console.log(`     ${p}`);
		} else {
			console.log(`ok   ${name}`);
		}
	}
	child.kill('SIGTERM');
	console.log(`conformance: ${cases.length - failed} of ${cases.length} answers match openapi.yaml`);
	process.exit(failed ? 1 : 0);
}

main();
