// app.js - igserve's page: choose an image, see the top 5, explain one class with Integrated
// Gradients over server-sent events, look at the maps and along the path. Plain JavaScript,
// no dependencies, same origin only (the server's Content-Security-Policy allows no other).
'use strict';

(() => {
	const $ = (id) => document.getElementById(id);
	const TOKEN_KEY = 'igserve.token';

	// ---- state ----
	const state = {
		file: null,          // the chosen image (File or Blob)
		fileUrl: null,       // its object URL (preview and overlay base)
		target: null,        // the class index to explain
		model: null,         // GET /v1/model
		params: {},          // openapi.yaml's parameter schemas, by name
		result: null,        // the last /attribute answer
		mapName: 'overlay',  // the heatmap shown
		downloadUrls: [],
		busy: false,
	};

	// ---- errors ----
	const STATUS_WORDS = {
		400: 'The server refused an option',
		401: 'The server needs an access token',
		404: 'The server does not know this address',
		413: 'The image is too large for this server',
		415: 'The server takes only JPEG and PNG images',
		422: 'The image could not be decoded (is the file damaged?)',
		429: 'The server is busy',
		503: 'The server is not ready or is shutting down',
		504: 'The server ran out of time for this request',
	};

	function showError(text) {
		const el = $('error');
		el.textContent = text;
		el.hidden = false;
	}
	function clearError() {
		const el = $('error');
		el.textContent = '';
		el.hidden = true;
	}

	// The words for an error answer: status, the server's own message, and what to do.
	function describeError(status, body, headers) {
		let words = STATUS_WORDS[status] || `The server answered ${status}`;
		if (status === 429 || status === 503) {
			const after = headers && headers.get('Retry-After');
			if (after) words += `; try again in ${after} s (Retry-After)`;
		}
		if (status === 413 && state.model && state.model.limits)
			words += ` (at most ${formatBytes(state.model.limits.upload_bytes)})`;
		const msg = body && body.error && body.error.message;
		return `${words} (HTTP ${status}${msg ? ': ' + msg : ''}).`;
	}

	// ---- requests (with the bearer token when the tab has one) ----
	function authHeaders(extra) {
		const h = Object.assign({}, extra || {});
		const token = sessionStorage.getItem(TOKEN_KEY);
		if (token) h.Authorization = 'Bearer ' + token;
		return h;
	}

	function askToken() {
		const dialog = $('token-dialog');
		return new Promise((resolve) => {
			const done = (ok) => {
				$('token-ok').onclick = $('token-cancel').onclick = null;
				dialog.close();
				const t = $('token-input').value.trim();
				if (ok && t) sessionStorage.setItem(TOKEN_KEY, t);
				resolve(ok && t !== '');
			};
			$('token-ok').onclick = () => done(true);
			$('token-cancel').onclick = () => done(false);
			dialog.showModal();
			$('token-input').focus();
		});
	}

	// fetch, asking for a token once when the answer is 401.
	async function call(url, init) {
		for (let attempt = 0; ; attempt++) {
			const res = await fetch(url, Object.assign({}, init, { headers: authHeaders(init && init.headers) }));
			if (res.status !== 401 || attempt > 0) return res;
			sessionStorage.removeItem(TOKEN_KEY);
			if (!(await askToken())) return res;
		}
	}

	async function errorOf(res) {
		let body = null;
		try { body = await res.json(); } catch (e) { /* not JSON */ }
		return describeError(res.status, body, res.headers);
	}

	// ---- formatting ----
	function formatBytes(n) {
		if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(n % (1 << 20) ? 1 : 0)} MiB`;
		if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
		return `${n} bytes`;
	}
	const pct = (p) => (p >= 0.0001 ? (100 * p).toFixed(p >= 0.001 ? 1 : 2) + '%' : p > 0 ? '<0.01%' : '0%');
	const num = (x, d = 4) => (x === null || x === undefined ? 'n/a'
		: Math.abs(x) >= 1e-3 || x === 0 ? Number(x.toPrecision(d)).toString() : x.toExponential(2));
	function seconds(s) {
		if (!isFinite(s)) return '…';
		return s < 60 ? `${Math.max(0, Math.round(s))} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
	}
	function el(tag, attrs, ...children) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (k === 'text') e.textContent = v;
			else e.setAttribute(k, v);
		}
		for (const c of children) e.append(c);
		return e;
	}

	// ---- what the server says about itself: /v1/model and openapi.yaml ----

	// The schema of each parameter under components/parameters (openapi.yaml is ours and
	// regular: a tiny reader of its `enum`, `minimum`, `maximum` and `default` is enough).
	function readParameters(yaml) {
		const params = {};
		const start = yaml.indexOf('\n  parameters:\n');
		if (start < 0) return params;
		const end = yaml.indexOf('\n  requestBodies:', start);
		const section = yaml.slice(start, end > 0 ? end : undefined);
		const blocks = section.split(/\n {4}(?=[a-z_]+:\n)/).slice(1);
		for (const block of blocks) {
			const name = block.slice(0, block.indexOf(':'));
			const schema = block.slice(block.indexOf('\n      schema:'));
			const p = {};
			const en = /\n\s+enum: \[([^\]]*)\]/.exec(schema);
			if (en) p.enum = en[1].split(',').map((s) => s.trim()).filter(Boolean);
			for (const key of ['minimum', 'maximum', 'default']) {
				const m = new RegExp(`\\n\\s+${key}: ([^\\n]+)`).exec(schema);
				if (m) p[key] = isNaN(Number(m[1])) ? m[1].trim() : Number(m[1]);
			}
			params[name] = p;
		}
		return params;
	}

	function fillSelect(select, values, chosen, labels) {
		select.replaceChildren(...values.map((v) => {
			const o = el('option', { value: v, text: (labels && labels[v]) || v });
			if (v === chosen) o.selected = true;
			return o;
		}));
	}

	const MAP_NAMES = {
		overlay: 'Overlay', magnitude: 'Magnitude', normalized: 'Normalized (RGB)',
		deviation: 'Deviation', channel_r: 'Red channel', channel_g: 'Green channel',
		channel_b: 'Blue channel', uncertainty: 'Uncertainty',
	};
	// The maps the server draws by default; refinement adds the uncertainty map.
	const DEFAULT_MAPS = 'normalized,deviation,magnitude,overlay,channel_r,channel_g,channel_b';

	async function loadServerDescription() {
		const [modelRes, specRes] = await Promise.all([call('/v1/model'), fetch('/openapi.yaml')]);
		if (!modelRes.ok) throw new Error(await errorOf(modelRes));
		state.model = await modelRes.json();
		state.params = specRes.ok ? readParameters(await specRes.text()) : {};
		const m = state.model;
		$('model-summary').textContent =
			`Model ${m.arch} (${m.classes} classes, input ${m.input_size}×${m.input_size}) from ${m.path}`;

		const d = m.request_defaults || {};
		const lim = m.limits || {};
		const P = state.params;
		// Path rules and the gradient-only methods, as openapi.yaml lists them.
		fillSelect($('method'), (P.method && P.method.enum) || [d.method || 'gausslegendre'],
			d.method || (P.method && P.method.default));
		fillSelect($('baseline'), (P.baseline && P.baseline.enum) || [d.baseline || 'gray'],
			d.baseline || (P.baseline && P.baseline.default));
		const maps = ((P.heatmaps && P.heatmaps.enum) || Object.keys(MAP_NAMES))
			.filter((n) => MAP_NAMES[n]);
		fillSelect($('heatmap-mode'), maps, state.mapName, MAP_NAMES);

		const maxSteps = lim.max_steps || (P.steps && P.steps.maximum);
		const steps = $('steps');
		steps.min = (P.steps && P.steps.minimum) || 1;
		if (maxSteps) steps.max = maxSteps;
		steps.value = d.steps || (P.steps && P.steps.default) || 50;
		const mx = $('max-steps');
		mx.min = 1;
		if (maxSteps) mx.max = maxSteps;
		mx.value = d.max_steps || (P.max_steps && P.max_steps.default) || 512;
		const tol = $('tolerance');
		tol.min = 1e-9;
		tol.max = 1;
		tol.value = 0.01;

		const bits = [];
		if (maxSteps) bits.push(`steps at most ${maxSteps}`);
		if (lim.path_maps_points) bits.push(`path maps for up to ${lim.path_maps_points} points`);
		if (lim.upload_bytes) bits.push(`uploads up to ${formatBytes(lim.upload_bytes)}`);
		if (lim.pixels) bits.push(`images up to ${(lim.pixels / 1e6).toFixed(0)} megapixels`);
		$('limits').textContent = bits.length ? `This server allows ${bits.join(', ')}.` : '';
		syncOptions();
	}

	// ---- 1. the image ----

	// JPEG or PNG, by their first bytes: anything else is refused here, in words, without
	// sending it (the server would say 415 just the same).
	async function sniff(file) {
		const b = new Uint8Array(await file.slice(0, 8).arrayBuffer());
		if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
		if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
		return null;
	}

	async function takeImage(file) {
		if (!file) return;
		if (state.busy) {
			showError('An explanation is running; choose the next image when it has finished.');
			return;
		}
		clearError();
		const type = await sniff(file);
		if (!type) {
			showError(`“${file.name || 'The pasted data'}” is not a JPEG or PNG image ` +
				`(${file.type || 'unknown type'}); the server takes only those (HTTP 415 otherwise).`);
			return;
		}
		const lim = state.model && state.model.limits;
		if (lim && lim.upload_bytes && file.size > lim.upload_bytes) {
			showError(`${STATUS_WORDS[413]}: ${formatBytes(file.size)}, at most ${formatBytes(lim.upload_bytes)} (HTTP 413).`);
			return;
		}
		state.file = file;
		if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
		state.fileUrl = URL.createObjectURL(file);
		const img = $('preview');
		img.src = state.fileUrl;
		img.hidden = false;
		$('image-info').textContent = `${file.name || 'pasted image'}, ${formatBytes(file.size)}`;
		$('result-section').hidden = true;
		$('progress-section').hidden = true;
		await predict();
	}

	function setupImageInput() {
		$('file-input').addEventListener('change', (e) => {
			const file = e.target.files[0];
			// cleared, so that choosing the same file again (after an error) is a change too
			e.target.value = '';
			takeImage(file);
		});
		const zone = $('drop-zone');
		zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
		zone.addEventListener('dragleave', () => zone.classList.remove('over'));
		zone.addEventListener('drop', (e) => {
			e.preventDefault();
			zone.classList.remove('over');
			if (e.dataTransfer.files.length) takeImage(e.dataTransfer.files[0]);
		});
		document.addEventListener('paste', (e) => {
			const item = [...e.clipboardData.items].find((i) => i.kind === 'file');
			if (item) takeImage(item.getAsFile());
		});
	}

	// ---- 2. predictions ----

	function imageForm(fields) {
		const form = new FormData();
		for (const [k, v] of Object.entries(fields)) form.append(k, String(v));
		form.append('image', state.file, state.file.name || 'image');
		return form;
	}

	async function predict() {
		const list = $('predictions');
		list.replaceChildren(el('li', { class: 'muted', text: 'Classifying…' }));
		$('explain').disabled = true;
		let res;
		try {
			res = await call('/predict', { method: 'POST', body: imageForm({ top_k: 5 }) });
		} catch (e) {
			list.replaceChildren();
			showError(`The server cannot be reached (${e.message}).`);
			return;
		}
		if (!res.ok) {
			list.replaceChildren();
			showError(await errorOf(res));
			return;
		}
		const answer = await res.json();
		showPredictions(answer.predictions);
		$('explain').disabled = false;
	}

	function showPredictions(predictions) {
		const list = $('predictions');
		list.replaceChildren(...predictions.map((p, i) => {
			const bar = el('span', { class: 'bar' }, el('span'));
			bar.firstChild.style.width = `${Math.max(0.5, 100 * p.probability)}%`;
			const b = el('button', {
				type: 'button', class: 'prediction', 'data-testid': 'prediction',
				'data-index': p.index, 'aria-pressed': i === 0 ? 'true' : 'false',
				title: `class ${p.index}, logit ${num(p.logit)}`,
			}, el('span', { class: 'label', text: p.label }), bar,
			el('span', { class: 'prob', text: pct(p.probability) }));
			b.addEventListener('click', () => setTarget(p.index));
			return el('li', {}, b);
		}));
		state.target = predictions.length ? predictions[0].index : null;
	}

	function setTarget(index) {
		state.target = index;
		for (const b of document.querySelectorAll('[data-testid=prediction]'))
			b.setAttribute('aria-pressed', String(Number(b.dataset.index) === index));
	}

	// ---- 3. options ----

	// Steps and refinement belong to the path rules; saliency and input x gradient have none.
	// Blur IG and Guided IG have steps but no adaptive refinement (issue 16).
	const NO_REFINE = ['blur_ig', 'guided_ig'];
	function syncOptions() {
		const path = !['saliency', 'input_x_gradient'].includes($('method').value);
		const refine = path && !NO_REFINE.includes($('method').value);
		$('steps').disabled = !path;
		$('refine').disabled = !refine;
		$('tolerance').disabled = $('max-steps').disabled = !refine || !$('refine').checked;
	}

	function setupOptions() {
		$('refine').addEventListener('change', syncOptions);
		$('method').addEventListener('change', syncOptions);
		$('heatmap-mode').addEventListener('change', () => showMap($('heatmap-mode').value));
		$('options').addEventListener('submit', (e) => {
			e.preventDefault();
			explain();
		});
	}

	// The request's fields, checked against the limits before anything is sent.
	function explainFields() {
		const lim = (state.model && state.model.limits) || {};
		const f = { method: $('method').value, baseline: $('baseline').value, raw: 'npy', preview: 64 };
		if (state.target !== null) f.target = state.target;
		const check = (input, what) => {
			if (!input.checkValidity() || input.value === '')
				throw new Error(`${what} must be from ${input.min} to ${input.max || '…'}, got “${input.value}”.`);
			return Number(input.value);
		};
		const pathRule = !['saliency', 'input_x_gradient'].includes(f.method);
		let points = 1;
		if (pathRule) {
			f.steps = check($('steps'), 'Steps');
			points = f.steps;
			if ($('refine').checked && !NO_REFINE.includes(f.method)) {
				f.tolerance = check($('tolerance'), 'Tolerance');
				f.max_steps = check($('max-steps'), 'At most (steps)');
				points = Math.max(points, f.max_steps);
				// the estimate pixel by pixel: plain IG on one baseline has it
				if (!f.baseline.includes('+')) f.heatmaps = DEFAULT_MAPS + ',uncertainty';
			}
		}
		const mapLimit = lim.path_maps_points || 512;
		f.path_maps = points <= mapLimit;
		return f;
	}

	// ---- 4. explain: the event stream ----

	// Server-sent events from a fetch body: yields {event, data} per blank-line-ended block.
	async function* readEvents(body) {
		const reader = body.getReader();
		const decoder = new TextDecoder();
		let buf = '';
		for (;;) {
			const { value, done } = await reader.read();
			if (value) buf += decoder.decode(value, { stream: true });
			let cut;
			while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
				const block = buf.slice(0, cut);
				buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
				const ev = { event: 'message', data: '' };
				for (const line of block.split(/\r?\n/)) {
					if (line.startsWith('event:')) ev.event = line.slice(6).trim();
					else if (line.startsWith('data:')) ev.data += (ev.data ? '\n' : '') + line.slice(5).replace(/^ /, '');
				}
				if (ev.data || ev.event !== 'message') yield ev;
			}
			if (done) return;
		}
	}

	function showProgress(p, started) {
		const bar = $('progress');
		bar.max = Math.max(1, p.points_total);
		bar.value = p.points_done;
		bar.dataset.pointsDone = String(p.points_done);
		bar.setAttribute('aria-valuetext', `${p.points_done} of ${p.points_total} points`);
		const elapsed = (performance.now() - started) / 1000;
		const left = p.points_done > 0 ? elapsed * (p.points_total - p.points_done) / p.points_done : Infinity;
		const parts = [`${p.points_done} of ${p.points_total} path points`];
		if (p.relative_l2 !== null && p.relative_l2 !== undefined)
			parts.push(`error estimate ${num(p.relative_l2, 3)} (relative L2, after round ${p.round})`);
		if (p.relative_error !== null && p.relative_error !== undefined)
			parts.push(`completeness error ${num(p.relative_error, 3)}`);
		parts.push(`about ${seconds(left)} left`);
		$('progress-text').textContent = parts.join(' · ');
		if (p.preview) {
			$('live-preview').src = 'data:image/png;base64,' + p.preview;
			$('live-preview-figure').hidden = false;
		}
	}

	async function explain() {
		if (!state.file || state.busy) return;
		clearError();
		let fields;
		try {
			fields = explainFields();
		} catch (e) {
			showError(e.message);
			return;
		}
		state.busy = true;
		$('explain').disabled = true;
		$('progress-section').hidden = false;
		$('live-preview-figure').hidden = true;
		$('live-preview').removeAttribute('src');
		const bar = $('progress');
		bar.value = 0;
		bar.dataset.pointsDone = '0';
		$('progress-text').textContent = 'Waiting for the server…';
		const started = performance.now();
		try {
			const res = await call('/attribute', {
				method: 'POST', body: imageForm(fields), headers: { Accept: 'text/event-stream' },
			});
			if (!res.ok) {
				showError(await errorOf(res));
				return;
			}
			let result = null;
			let failed = false;
			if ((res.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
				for await (const ev of readEvents(res.body)) {
					const data = JSON.parse(ev.data);
					if (ev.event === 'progress') showProgress(data, started);
					else if (ev.event === 'result') result = data;
					else if (ev.event === 'error') {
						const status = { bad_option: 400, deadline_exceeded: 504, queue_full: 429,
							not_ready: 503, out_of_memory: 503 }[data.error && data.error.code] || 500;
						showError(describeError(status, data, null));
						failed = true;
					}
				}
				if (!result && !failed) showError('The server ended the event stream without a result.');
			} else {
				result = await res.json();
			}
			if (result) {
				const n = result.method.steps;
				const l2 = result.convergence ? result.convergence.relative_l2 : null;
				showProgress({ points_done: n, points_total: n, relative_error: result.completeness.relative_error,
					relative_l2: l2, round: 0 }, started);
				$('progress-text').textContent = [`${n} of ${n} path points`,
					l2 === null ? 'no error estimate' : `error estimate ${num(l2, 3)} (relative L2)`,
					`completeness error ${num(result.completeness.relative_error, 3)}`,
					`done in ${seconds((performance.now() - started) / 1000)}`].join(' · ');
				showResult(result);
			}
		} catch (e) {
			showError(`The explanation stopped: ${e.message}.`);
		} finally {
			state.busy = false;
			$('explain').disabled = false;
		}
	}

	// ---- 5. the result ----

	const LEGENDS = {
		overlay: ['viridis', 'none', 'most', 'Where the attributions are large (sum over channels of |attr|, ' +
			'clipped at the 99th percentile), through viridis, over the image.'],
		magnitude: ['gray', 'none', 'most', 'Sum over channels of |attr|, clipped at the 99th percentile.'],
		normalized: ['rgb', 'min', 'max', 'Each attribution min-max scaled to 0..1, as RGB: gray is zero ' +
			'only when the range is symmetric.'],
		deviation: ['rgb', 'median', 'far', '|attr − median| × 2 / the largest deviation, clipped.'],
		channel_r: ['gray', 'min', 'max', 'The red channel’s attributions, min-max scaled.'],
		channel_g: ['gray', 'min', 'max', 'The green channel’s attributions, min-max scaled.'],
		channel_b: ['gray', 'min', 'max', 'The blue channel’s attributions, min-max scaled.'],
		uncertainty: ['gray', 'sure', 'unsure', 'The convergence estimate pixel by pixel: where the ' +
			'attributions may still be off (its 99th percentile is white; read it by regions).'],
	};

	function showMap(name) {
		const maps = (state.result && state.result.heatmaps) || {};
		if (!maps[name]) name = Object.keys(maps).find((k) => MAP_NAMES[k]) || name;
		state.mapName = name;
		if (maps[name]) $('heatmap').src = 'data:image/png;base64,' + maps[name];
		$('heatmap').alt = `${MAP_NAMES[name] || name} heatmap of the attributions`;
		$('heatmap-mode').value = name;
		for (const b of $('map-choice').children) b.setAttribute('aria-pressed', String(b.dataset.map === name));
		const [kind, low, high, text] = LEGENDS[name] || ['gray', 'low', 'high', ''];
		$('legend-bar').className = 'legend-bar ' + kind;
		$('legend-low').textContent = low;
		$('legend-high').textContent = high;
		$('legend-text').textContent = text;
	}

	function completenessReport(r) {
		const c = r.completeness;
		const v = r.convergence;
		const box = $('completeness');
		const lines = [
			`Explaining “${r.target.label}” (class ${r.target.index}, logit ${num(r.target.logit)}, ` +
				`probability ${pct(r.target.probability)}) with ${r.method.name}, ${r.method.steps} points, ` +
				`baseline ${r.method.baseline === null ? 'none' : r.method.baseline}.`,
			`Completeness: the attributions sum to ${num(c.sum)}; F(image) − F(baseline) = ` +
				`${num(c.f_input)} − ${num(c.f_baseline)} = ${num(c.f_input - c.f_baseline)}. ` +
				`Relative error ${num(c.relative_error, 3)} (${pct(c.relative_error)}), delta ${num(c.delta, 3)}.`,
		];
		if (v) {
			lines.push(v.relative_l2 === null
				? `Convergence: no estimate: the ${v.points} points hold no coarser rule (estimator ${v.estimator}).`
				: `Convergence: estimated relative L2 distance from the exact integral ${num(v.relative_l2, 3)} ` +
				  `(${pct(v.relative_l2)}; estimator ${v.estimator}, ${v.points} points).`);
		} else {
			lines.push('Convergence: not applicable (no path integral for this method).');
		}
		let verdict = r.method.converged ? 'Converged' : 'Not converged';
		if (r.method.tolerance !== null) verdict += ` to tolerance ${num(r.method.tolerance)}`;
		if (r.method.stopped) verdict += ` (stopped at the ${r.method.stopped})`;
		lines.push(`${verdict}; ${r.method.evaluations || r.method.steps} gradient evaluations, ` +
			`${seconds((r.timing_ms.total || 0) / 1000)} on the server.`);
		box.replaceChildren(...lines.map((t) => el('p', { class: 'num', text: t })));
	}

	function b64Blob(b64, type) {
		const bin = atob(b64);
		const bytes = new Uint8Array(bin.length);
		for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
		return new Blob([bytes], { type });
	}

	function downloads(r) {
		for (const u of state.downloadUrls) URL.revokeObjectURL(u);
		state.downloadUrls = [];
		const links = [];
		const add = (blob, name, text) => {
			const url = URL.createObjectURL(blob);
			state.downloadUrls.push(url);
			links.push(el('a', { href: url, download: name, text }));
		};
		for (const [name, b64] of Object.entries(r.heatmaps || {}))
			add(b64Blob(b64, 'image/png'), `${name}.png`, `${name}.png`);
		if (r.attributions_npy)
			add(b64Blob(r.attributions_npy, 'application/octet-stream'), 'attributions.npy', 'attributions.npy');
		add(new Blob([JSON.stringify(r, null, 1)], { type: 'application/json' }), 'attribution.json', 'attribution.json');
		$('downloads').replaceChildren(el('span', { class: 'muted', text: 'Download: ' }), ...links);
	}

	function showResult(r) {
		state.result = r;
		$('result-section').hidden = false;
		$('base-image').src = state.fileUrl;
		const choice = $('map-choice');
		choice.replaceChildren(...Object.keys(r.heatmaps || {}).filter((k) => MAP_NAMES[k]).map((k) => {
			const b = el('button', { type: 'button', 'data-map': k, 'aria-pressed': 'false', text: MAP_NAMES[k] });
			b.addEventListener('click', () => showMap(k));
			return b;
		}));
		showMap($('heatmap-mode').value || state.mapName);
		completenessReport(r);
		downloads(r);
		showPath(r);
	}

	// ---- the path explorer ----

	const SVG = 'http://www.w3.org/2000/svg';
	function svg(tag, attrs) {
		const e = document.createElementNS(SVG, tag);
		for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
		return e;
	}

	function plotPath(path, selected) {
		const plot = $('path-plot');
		const W = 360, H = 220, L = 44, R = 44, T = 12, B = 28;
		const key = path.length && path[0].logit === undefined ? 'probability' : 'logit';
		const f = path.map((p) => p[key]);
		const d = path.map((p) => p.path_derivative);
		const range = (a) => {
			let lo = Math.min(...a), hi = Math.max(...a);
			if (!(hi > lo)) { lo -= 1; hi += 1; }
			return [lo, hi];
		};
		const [flo, fhi] = range(f), [dlo, dhi] = range(d);
		const x = (a) => L + a * (W - L - R);
		const yf = (v) => T + (fhi - v) / (fhi - flo) * (H - T - B);
		const yd = (v) => T + (dhi - v) / (dhi - dlo) * (H - T - B);
		const line = (ys, cls) => svg('polyline', { class: cls,
			points: path.map((p, i) => `${x(p.alpha).toFixed(1)},${ys[i].toFixed(1)}`).join(' ') });
		const text = (tx, ty, s, anchor) => {
			const t = svg('text', { x: tx, y: ty, 'text-anchor': anchor || 'middle' });
			t.textContent = s;
			return t;
		};
		const parts = [
			svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
			svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
			svg('line', { class: 'axis', x1: W - R, y1: T, x2: W - R, y2: H - B }),
			text(L, H - 10, '0'), text(W - R, H - 10, '1'), text(W / 2, H - 4, 'α (baseline → image)'),
			text(L - 4, T + 8, num(fhi, 3), 'end'), text(L - 4, H - B, num(flo, 3), 'end'),
			text(W - R + 4, T + 8, num(dhi, 3), 'start'), text(W - R + 4, H - B, num(dlo, 3), 'start'),
			line(d.map(yd), 'd'), line(f.map(yf), 'f'),
		];
		const p = path[selected];
		if (p) {
			parts.push(svg('line', { class: 'marker', x1: x(p.alpha), y1: T, x2: x(p.alpha), y2: H - B }));
			parts.push(svg('circle', { cx: x(p.alpha), cy: yf(f[selected]), r: 3.5, fill: 'currentColor' }));
		}
		plot.replaceChildren(...parts);
	}

	function selectPathPoint(k) {
		const path = state.result.path;
		const p = path[k];
		if (!p) return;
		const key = p.logit === undefined ? 'probability' : 'logit';
		$('path-point-label').textContent =
			`${k + 1} of ${path.length}: α = ${num(p.alpha, 3)}, F = ${num(p[key])}, ` +
			`dF/dα = ${num(p.path_derivative)}, weight ${num(p.weight, 3)}`;
		const img = $('path-map');
		if (p.map) {
			img.src = 'data:image/png;base64,' + p.map;
			img.dataset.point = String(k);
			img.hidden = false;
			$('path-map-note').textContent = 'The gradient’s magnitude at this point (all points share one scale).';
		} else {
			img.hidden = true;
			$('path-map-note').textContent = 'No gradient maps: they are sent for at most ' +
				`${(state.model.limits || {}).path_maps_points || 512} path points.`;
		}
		plotPath(path, k);
	}

	function showPath(r) {
		const slider = $('path-slider');
		const path = r.path || [];
		// path points in alpha order (refinement may have merged rounds)
		path.sort((a, b) => a.alpha - b.alpha);
		slider.min = 0;
		slider.max = Math.max(0, path.length - 1);
		slider.value = Math.floor((path.length - 1) / 2);
		slider.disabled = path.length < 2;
		selectPathPoint(Number(slider.value));
	}

	// ---- start ----
	function start() {
		setupImageInput();
		setupOptions();
		$('path-slider').addEventListener('input', (e) => selectPathPoint(Number(e.target.value)));
		const opacity = () => { $('heatmap').style.opacity = $('opacity').value / 100; };
		$('opacity').addEventListener('input', opacity);
		opacity();
		loadServerDescription().catch((e) => showError(`Cannot read the server’s description: ${e.message}`));
	}
	if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
	else start();
})();
