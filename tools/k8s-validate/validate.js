#!/usr/bin/env node
// validate.js - every Kubernetes manifest under deploy/ against the API schemas.
//
// usage: node tools/k8s-validate/validate.js [DIR]   (default: deploy/)
//
// Each YAML document with an apiVersion and kind is checked with the JSON schemas of
// kubernetes-models (the Kubernetes OpenAPI definitions) or @kubernetes-models/keda (KEDA's
// CRDs); an unknown apiVersion/kind is an error, not a pass. Kustomizations are checked for
// their own shape and that every resource they list exists. Then the properties the project
// relies on: an Indexed Job that shards a manifest by JOB_COMPLETION_INDEX, and autoscaling on
// the service's own load (a KEDA ScaledObject whose query reads igserve's queue or in-flight
// metrics). Exit 1 on any problem, listing each.
'use strict';
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const k8s = require('kubernetes-models');
const keda = require('@kubernetes-models/keda');

const root = path.resolve(process.argv[2] || path.join(__dirname, '..', '..', 'deploy'));
const problems = [];
const seen = [];

// "apps/v1" -> kubernetes-models' module key ("apps") and version ("v1"); "v1" -> core.
function modelClass(apiVersion, kind) {
	if (apiVersion.startsWith('keda.sh/')) {
		const v = keda[apiVersion.split('/')[1]] || require('@kubernetes-models/keda/' + apiVersion);
		return v && v[kind];
	}
	const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
	let mod;
	try {
		mod = require('kubernetes-models/' + (group ? group + '/' : '') + version);
	} catch (e) {
		return undefined;
	}
	return mod[kind];
}

function yamlFiles(dir) {
	const out = [];
	for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, e.name);
		if (e.isDirectory()) out.push(...yamlFiles(p));
		else if (/\.ya?ml$/.test(e.name)) out.push(p);
	}
	return out.sort();
}

function checkKustomization(file, doc) {
	const dir = path.dirname(file);
	if (doc.apiVersion !== 'kustomize.config.k8s.io/v1beta1')
		problems.push(`${file}: kustomization apiVersion ${doc.apiVersion}`);
	if (!Array.isArray(doc.resources) || doc.resources.length === 0)
		problems.push(`${file}: no resources`);
	for (const r of doc.resources || []) {
		const p = path.join(dir, r);
		const ok = fs.existsSync(p) &&
			(fs.statSync(p).isFile() || fs.existsSync(path.join(p, 'kustomization.yaml')));
		if (!ok) problems.push(`${file}: resource ${r} does not exist`);
	}
	for (const p of doc.patches || []) {
		if (!p.patch && !p.path) problems.push(`${file}: a patch with neither patch nor path`);
		if (p.patch) yaml.loadAll(p.patch); // must parse
	}
}

for (const file of yamlFiles(root)) {
	let docs;
	try {
		docs = yaml.loadAll(fs.readFileSync(file, 'utf8'));
	} catch (e) {
		problems.push(`${file}: not YAML: ${e.message}`);
		continue;
	}
	const rel = path.relative(process.cwd(), file);
	for (const doc of docs) {
		if (!doc) continue;
		if (doc.kind === 'Kustomization') {
			checkKustomization(rel, doc);
			seen.push({ file: rel, doc });
			continue;
		}
		if (!doc.apiVersion || !doc.kind) {
			problems.push(`${rel}: a document without apiVersion and kind`);
			continue;
		}
		const Cls = modelClass(doc.apiVersion, doc.kind);
		if (!Cls) {
			problems.push(`${rel}: no schema for ${doc.apiVersion} ${doc.kind}`);
			continue;
		}
		try {
			new Cls(doc).validate();
			seen.push({ file: rel, doc });
			console.log(`ok   ${rel}: ${doc.apiVersion} ${doc.kind} ${doc.metadata && doc.metadata.name}`);
		} catch (e) {
			problems.push(`${rel}: ${doc.kind} ${doc.metadata && doc.metadata.name}: ${e.message}`);
		}
	}
}

// What the project relies on, beyond the schemas.
const jobs = seen.filter((s) => s.doc.kind === 'Job');
const indexed = jobs.find((s) => {
	const spec = s.doc.spec || {};
	const c = ((spec.template || {}).spec || {}).containers || [];
	const args = c.flatMap((x) => (x.args || []).map(String));
	const env = c.flatMap((x) => x.env || []);
	const shardArg = args.findIndex((a) => a === '--shard');
	const n = shardArg >= 0 ? String(args[shardArg + 1]).split('/')[1] : undefined;
	return spec.completionMode === 'Indexed' && shardArg >= 0 &&
		args[shardArg + 1].startsWith('$(JOB_COMPLETION_INDEX)/') &&
		Number(n) === spec.completions && env.some((e) => e.name === 'JOB_COMPLETION_INDEX') &&
		args.includes('--manifest');
});
if (!indexed)
	problems.push('no Indexed Job with --manifest and --shard $(JOB_COMPLETION_INDEX)/N, N = completions');
const scaled = seen.find((s) => s.doc.kind === 'ScaledObject' &&
	(s.doc.spec.triggers || []).some((t) => t.type === 'prometheus' &&
		/igserve_(queue_depth|inflight_jobs|running_jobs)/.test((t.metadata || {}).query || '')));
if (!scaled)
	problems.push('no ScaledObject with a prometheus trigger on igserve_queue_depth / igserve_inflight_jobs');

for (const p of problems) console.error('FAIL ' + p);
console.log(`${seen.length} documents valid, ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
