#!/usr/bin/env node
// page.test.js - the web page in a real browser: Debian's chromium driven by playwright-core.
//
// usage: node tests/browser/page.test.js [IGSERVE] [SCREENSHOT_DIR]
//        (defaults: build/igserve, build/browser-screenshots; run from the repository root)
//
// Starts `IGSERVE serve` on a free port with the demo model, then at 1280x800 and at 390x844:
// uploads models/demo/examples/circle.png, sees the predictions, picks a target by clicking it,
// explains with progress (data-points-done must grow), sees the heatmap and the completeness
// report, moves the path slider by keyboard (the path map must change), then gets a visible
// error for a file that is not an image and one for a PNG that does not decode (the server's
// 422). At desktop size also: refinement with previews, 413/429/503 in words (answers played
// by page.route) and the token dialog on a 401; at phone size: drag and drop, paste, and a target
// chosen by keyboard. Throughout: no console errors (but the expected "Failed to load
// resource" line of each refusal), no uncaught exceptions, no request to any other origin, no
// horizontal scrolling. Screenshots of
// every stage go to SCREENSHOT_DIR. Exit status 0 when every check passed, 1 otherwise.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { chromium } = require('playwright-core');

const root = path.resolve(__dirname, '..', '..');
const binary = path.resolve(process.argv[2] || path.join(root, 'build', 'igserve'));
const shotDir = path.resolve(process.argv[3] || path.join(root, 'build', 'browser-screenshots'));
const model = path.join(root, 'models', 'demo', 'shapes-resnet.safetensors');
const example = path.join(root, 'models', 'demo', 'examples', 'circle.png');
const STEPS = 32;
const SIZES = [{ name: 'desktop', width: 1280, height: 800 }, { name: 'phone', width: 390, height: 844 }];

let failures = 0;
function check(ok, what) {
	if (ok) {
		console.log(`ok   ${what}`);
	} else {
		failures++;
		console.log(`FAIL ${what}`);
	}
}

function startServer() {
	return new Promise((resolve, reject) => {
		const child = spawn(binary, ['serve', '--host', '127.0.0.1', '--port', '0', '--model', model,
			'--workers', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
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
						child.removeAllListeners('exit');
						resolve({ child, port: ev.port });
					}
				} catch (e) { /* not a whole JSON line yet */ }
			}
		});
	});
}

async function waitReady(origin) {
	for (let i = 0; i < 300; i++) {
		const ok = await fetch(origin + '/readyz').then((r) => r.ok, () => false);
		if (ok) return;
		await new Promise((r) => setTimeout(r, 100));
	}
	throw new Error('/readyz did not answer 200 in 30 s');
}

// One pass of the whole flow at one window size.
async function flow(context, origin, size) {
	const page = await context.newPage();
	await page.setViewportSize({ width: size.width, height: size.height });
	const consoleErrors = [];
	const foreign = [];
	let allowed = null; // the one expected "Failed to load resource" line of a refusal
	page.on('console', (msg) => {
		if (msg.type() !== 'error') return;
		if (allowed && allowed.test(msg.text())) return;
		consoleErrors.push(msg.text());
	});
	page.on('pageerror', (e) => consoleErrors.push('uncaught: ' + e.message));
	page.on('request', (req) => {
		const url = req.url();
		if (!url.startsWith(origin + '/') && !/^(data|blob):/.test(url)) foreign.push(url);
	});
	const shot = (stage) => page.screenshot({ path: path.join(shotDir, `${size.name}-${stage}.png`), fullPage: true });
	const tag = (t) => `[${size.name} ${size.width}x${size.height}] ${t}`;
	const byId = (id) => page.locator(`[data-testid="${id}"]`);

	await page.goto(origin + '/');
	// the form is filled from /v1/model: the default steps arrive with it
	await page.waitForFunction(() => document.querySelector('#method option') !== null);
	check(await page.inputValue('#steps') === '50', tag('steps default 50 from /v1/model'));
	for (const id of ['predictions', 'explain', 'progress', 'heatmap', 'completeness', 'path-slider',
		'path-map', 'path-plot', 'error'])
		check(await byId(id).count() === 1, tag(`data-testid=${id} exists`));
	await shot('1-empty');

	// the image, by the file input
	await page.setInputFiles('input[type=file]', example);
	const predictions = byId('prediction');
	await predictions.first().waitFor();
	const labels = await predictions.allTextContents();
	check(labels.length === 4 && /circle/.test(labels[0]), tag(`4 predictions, circle first: ${labels.map((l) => l.replace(/\s+/g, ' ')).join(' | ')}`));
	check(await byId('preview').isVisible(), tag('the chosen image is previewed'));

	// a target other than the top class, by clicking it
	const second = predictions.nth(1);
	const secondLabel = (await second.locator('.label').textContent()).trim();
	await second.click();
	check(await second.getAttribute('aria-pressed') === 'true' &&
		await predictions.first().getAttribute('aria-pressed') === 'false', tag(`clicking "${secondLabel}" makes it the target`));
	await page.fill('#steps', String(STEPS));

	// explain, recording every data-points-done the page shows
	await page.evaluate(() => {
		window.pointsSeen = [];
		const bar = document.querySelector('[data-testid=progress]');
		new MutationObserver(() => window.pointsSeen.push(Number(bar.dataset.pointsDone)))
			.observe(bar, { attributes: true, attributeFilter: ['data-points-done'] });
	});
	await byId('explain').click();
	await page.waitForFunction(() => {
		const img = document.querySelector('[data-testid=heatmap]');
		return img.src.startsWith('data:image/png') && img.complete && img.naturalWidth > 0;
	}, null, { timeout: 60000 });
	const seen = await page.evaluate(() => window.pointsSeen);
	const positive = seen.filter((n) => n > 0);
	const grows = positive.every((n, i) => i === 0 || n >= positive[i - 1]);
	check(positive.length >= 3 && new Set(positive).size >= 3 && grows && positive[positive.length - 1] === STEPS,
		tag(`data-points-done grows to ${STEPS}: ${seen.join(',')}`));
	const report = (await byId('completeness').textContent()).replace(/\s+/g, ' ');
	check(new RegExp(`“${secondLabel}”`).test(report), tag('the report explains the clicked class'));
	check(/Relative error [0-9][0-9.e+-]*/.test(report) && /relative L2 [^ ]* [0-9][0-9.e+-]*|no estimate/.test(report),
		tag(`completeness holds the relative error and the convergence estimate: ${report.slice(0, 400)}`));
	const downloads = await page.locator('#downloads a').evaluateAll((as) => as.map((a) => a.getAttribute('download')));
	check(['overlay.png', 'attributions.npy', 'attribution.json'].every((d) => downloads.includes(d)),
		tag(`downloads: ${downloads.join(' ')}`));
	// another map is a click away
	const before = await byId('heatmap').getAttribute('src');
	await page.locator('#map-choice button[data-map=magnitude]').click();
	check(await byId('heatmap').getAttribute('src') !== before, tag('the magnitude map replaces the overlay'));
	await shot('2-result');

	// the path explorer, by keyboard
	const slider = byId('path-slider');
	check(await slider.getAttribute('max') === String(STEPS - 1), tag(`the slider spans the ${STEPS} path points`));
	const mapBefore = await byId('path-map').getAttribute('src');
	const plotBefore = await byId('path-plot').innerHTML();
	await slider.focus();
	for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowRight');
	const mapAfter = await byId('path-map').getAttribute('src');
	check(mapBefore && mapBefore.startsWith('data:image/png') && mapAfter !== mapBefore, tag('moving the slider changes the path map'));
	await slider.fill('0'); // as a script would set it
	check(await byId('path-map').getAttribute('src') !== mapAfter && /^Path point 1 of/.test(await page.locator('label[for=path-slider]').textContent()),
		tag('setting the slider to 0 shows the first point'));
	check(await byId('path-plot').locator('polyline').count() === 2 && await byId('path-plot').innerHTML() !== plotBefore,
		tag('the path plot draws F and dF/dalpha and moves its marker'));
	check(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1),
		tag('no horizontal scrolling'));
	await byId('path-slider').scrollIntoViewIfNeeded();
	await shot('3-path');

	// the opacity slider fades the map over the image
	await page.fill('#opacity', '30');
	check(await byId('heatmap').evaluate((img) => img.style.opacity) === '0.3', tag('the opacity slider sets the map\'s opacity'));

	if (size.name === 'desktop') {
		// refinement to a tolerance sends a preview after each round, and the error estimate
		await page.check('#refine');
		await page.fill('#tolerance', '0.05');
		await page.fill('#max-steps', '64');
		await page.fill('#steps', '8');
		await byId('explain').click();
		await page.waitForFunction(() => document.querySelector('#live-preview').src.startsWith('data:image/png'),
			null, { timeout: 60000 });
		check(await page.locator('#live-preview').isVisible(), tag('a preview shows while refining'));
		await page.waitForFunction(() => !document.querySelector('[data-testid=explain]').disabled, null, { timeout: 60000 });
		const refined = (await byId('completeness').textContent()).replace(/\s+/g, ' ');
		check(/relative L2 distance from the exact integral [0-9]/.test(refined) && /tolerance 0\.05/.test(refined),
			tag(`refined: ${refined.slice(0, 400)}`));
		// refinement also asks for the uncertainty map, one more map button
		await page.locator('#map-choice button[data-map=uncertainty]').click();
		check((await byId('heatmap').getAttribute('alt')).startsWith('Uncertainty'),
			tag('the uncertainty map shows after refining'));
		await shot('3b-refined');
	}

	if (size.name === 'phone') {
		// the image by drag and drop, then a target by keyboard
		const bytes = [...fs.readFileSync(path.join(root, 'models', 'demo', 'examples', 'triangle.png'))];
		await page.evaluate((b) => {
			const dt = new DataTransfer();
			dt.items.add(new File([new Uint8Array(b)], 'triangle.png', { type: 'image/png' }));
			document.querySelector('#drop-zone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true }));
		}, bytes);
		await page.waitForFunction(() => {
			const first = document.querySelector('[data-testid=prediction]');
			return first !== null && /triangle/.test(first.textContent);
		});
		check(true, tag('a dropped image is classified (triangle first)'));
		// and by paste
		const square = [...fs.readFileSync(path.join(root, 'models', 'demo', 'examples', 'square.png'))];
		await page.evaluate((b) => {
			const dt = new DataTransfer();
			dt.items.add(new File([new Uint8Array(b)], 'square.png', { type: 'image/png' }));
			document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
		}, square);
		await page.waitForFunction(() => {
			const first = document.querySelector('[data-testid=prediction]');
			return first !== null && /square/.test(first.textContent);
		});
		check(true, tag('a pasted image is classified (square first)'));
		await predictions.nth(2).focus();
		await page.keyboard.press('Enter');
		check(await predictions.nth(2).getAttribute('aria-pressed') === 'true', tag('Enter on a prediction makes it the target'));
	}

	if (size.name === 'desktop') {
		// the server's refusals in words, its answers played by page.route (the statuses a
		// test cannot cause cheaply); each one's "Failed to load resource" line is expected
		const refusals = [
			[413, {}, 'payload_too_large', /too large/],
			[429, { 'Retry-After': '7' }, 'queue_full', /busy; try again in 7 s/],
			[503, { 'Retry-After': '1' }, 'not_ready', /not ready/],
		];
		for (const [status, headers, code, words] of refusals) {
			await page.route('**/predict', (route) => route.fulfill({ status, headers,
				contentType: 'application/json', body: JSON.stringify({ error: { code, message: `m${status}` } }) }));
			allowed = new RegExp(`status of ${status}`);
			await page.setInputFiles('input[type=file]', example);
			await page.waitForFunction((st) => document.querySelector('[data-testid=error]').textContent.includes(`HTTP ${st}`), status);
			const t = await byId('error').textContent();
			check(await byId('error').isVisible() && words.test(t), tag(`${status}: "${t}"`));
			await page.unroute('**/predict');
		}
		// 401: the page asks for a token, keeps it for the tab and sends it as a bearer token
		let authorization = null;
		await page.route('**/predict', (route) => {
			authorization = route.request().headers().authorization || null;
			if (authorization !== 'Bearer s3cret')
				return route.fulfill({ status: 401, headers: { 'WWW-Authenticate': 'Bearer' },
					contentType: 'application/json', body: '{"error":{"code":"unauthorized","message":"no token"}}' });
			return route.continue();
		});
		allowed = /status of 401/;
		await page.setInputFiles('input[type=file]', example);
		await page.locator('#token-dialog').waitFor({ state: 'visible' });
		await page.fill('#token-input', 's3cret');
		await page.click('#token-ok');
		await predictions.first().waitFor();
		await page.waitForFunction(() => {
			const first = document.querySelector('[data-testid=prediction]');
			return first !== null && /circle/.test(first.textContent);
		});
		check(authorization === 'Bearer s3cret' &&
			await page.evaluate(() => sessionStorage.getItem('igserve.token')) === 's3cret',
		tag('after a 401 the page asks for a token, keeps it in sessionStorage and sends it'));
		await page.unroute('**/predict');
		await page.evaluate(() => sessionStorage.clear());
		allowed = null;
	}

	// a file that is not an image: an error in words, visible
	await page.setInputFiles('input[type=file]', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image\n') });
	const error = byId('error');
	await error.waitFor({ state: 'visible' });
	check(/not a JPEG or PNG/.test(await error.textContent()), tag(`non-image: "${await error.textContent()}"`));
	await shot('4-not-an-image');

	// a PNG that does not decode: the server's 422 in words
	allowed = /status of 422/;
	const png = fs.readFileSync(example);
	await page.setInputFiles('input[type=file]', { name: 'broken.png', mimeType: 'image/png',
		buffer: Buffer.concat([png.subarray(0, 40), Buffer.alloc(64)]) });
	await page.waitForFunction(() => /422/.test(document.querySelector('[data-testid=error]').textContent));
	const text422 = await error.textContent();
	check(await error.isVisible() && /could not be decoded/.test(text422), tag(`broken PNG: "${text422}"`));
	allowed = null;
	await shot('5-broken-png');

	check(consoleErrors.length === 0, tag(`no console errors${consoleErrors.length ? ': ' + consoleErrors.join(' | ') : ''}`));
	check(foreign.length === 0, tag(`no requests to other origins${foreign.length ? ': ' + foreign.join(' ') : ''}`));
	await page.close();
}

async function main() {
	fs.mkdirSync(shotDir, { recursive: true });
	let server;
	try {
		server = await startServer();
	} catch (e) {
		console.error('browser test: ' + e.message);
		process.exit(1);
	}
	const origin = `http://127.0.0.1:${server.port}`;
	const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'igserve-chromium-'));
	let context;
	try {
		await waitReady(origin);
		// a fresh profile; the flags keep chromium off the network (no updates, sync, QUIC)
		context = await chromium.launchPersistentContext(profile, {
			executablePath: '/usr/bin/chromium',
			headless: true,
			args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
				'--disable-background-networking', '--disable-component-update', '--disable-sync'],
		});
		for (const size of SIZES) await flow(context, origin, size);
	} catch (e) {
		failures++;
		console.log('FAIL ' + (e.stack || e.message));
	} finally {
		if (context) await context.close().catch(() => {});
		server.child.kill('SIGTERM');
		fs.rmSync(profile, { recursive: true, force: true });
	}
	console.log(`browser test: ${failures ? failures + ' check(s) failed' : 'every check passed'}; screenshots in ${shotDir}`);
	process.exit(failures ? 1 : 0);
}

main();
