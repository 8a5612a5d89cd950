// The verdict on conformance runs, stricter than the suite's own exit code.
//
//   node conformance-verdict.mjs [--allow FILE] [--expect FILE] [--label NAME] DIR
//
// DIR is the -o directory of one `conformance server` run: one
// subdirectory per scenario holding its checks.json.  A scenario fails if
// any of its checks is a FAILURE, whether the requirement set scores it or
// not (the suite's exit code ignores unscored scenarios, so its "pending"
// and extension scenarios could regress unseen).  The exceptions are the
// scenarios named in the allow-list FILE: features squirreld does not have
// yet.  A listed scenario that passes fails the verdict too, so that the
// list shrinks as features arrive and cannot hide a later regression.
// WARNINGs are printed but do not fail.  With --expect, a FILE naming
// the scenarios the run should have (one a line), a scenario without
// results (the suite died, or skipped it) fails as MISSING.
//
// Exit status: 0 when every scenario passed (or is allowed to fail), 1
// otherwise, 2 on bad usage or when DIR holds no results at all.
//
// The closing line reads "conformance NAME: N scenarios passed, N failed,
// ..." on purpose: never "Total: N passed, N failed", the shape of the
// suite's own summary line (which counts unscored failures).
import fs from 'node:fs';
import path from 'node:path';

function usage(msg) {
  if (msg) console.error(`conformance-verdict: ${msg}`);
  console.error('usage: node conformance-verdict.mjs [--allow FILE] [--expect FILE] [--label NAME] DIR');
  process.exit(2);
}

let allowFile = null;
let expectFile = null;
let label = null;
let dir = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--allow') allowFile = argv[++i] ?? usage('--allow needs a file');
  else if (argv[i] === '--expect') expectFile = argv[++i] ?? usage('--expect needs a file');
  else if (argv[i] === '--label') label = argv[++i] ?? usage('--label needs a name');
  else if (argv[i].startsWith('-')) usage(`unknown option ${argv[i]}`);
  else if (dir === null) dir = argv[i];
  else usage('one directory only');
}
if (dir === null) usage('no directory');
label ??= path.basename(path.resolve(dir));

// A list file: one scenario name per line; '#' starts a comment.
function readList(file) {
  const names = new Map(); // scenario -> line number
  fs.readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    const name = line.replace(/#.*/, '').trim();
    if (name) names.set(name, i + 1);
  });
  return names;
}
const allowed = allowFile ? readList(allowFile) : new Map();
const expected = expectFile ? readList(expectFile) : new Map();

// Results directories are named server-<scenario>-<ISO time, ':' and '.'
// replaced by '-'>.  A scenario run twice keeps its last result.
const results = new Map();
let entries;
try {
  entries = fs.readdirSync(dir, { withFileTypes: true });
} catch (e) {
  usage(`cannot read ${dir}: ${e.message}`);
}
for (const e of entries.filter((x) => x.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
  const file = path.join(dir, e.name, 'checks.json');
  if (!fs.existsSync(file)) continue;
  const scenario = e.name.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
  let checks;
  try {
    checks = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    checks = [{ id: 'checks.json', status: 'FAILURE', errorMessage: `unreadable: ${err.message}` }];
  }
  results.set(scenario, Array.isArray(checks) ? checks : []);
}
if (results.size === 0) usage(`no checks.json under ${dir}`);
for (const name of expected.keys()) {
  if (!results.has(name)) {
    results.set(name, [{ id: 'results', status: 'FAILURE', errorMessage: 'MISSING: the run left no checks.json for this scenario' }]);
  }
}

const firstLine = (s) => String(s ?? '').split('\n')[0].slice(0, 300);
let passed = 0, failed = 0, excused = 0, warnings = 0;
for (const [scenario, checks] of [...results].sort()) {
  const failures = checks.filter((c) => c.status === 'FAILURE');
  const warns = checks.filter((c) => c.status === 'WARNING');
  warnings += warns.length;
  let verdict;
  if (allowed.has(scenario)) {
    if (failures.length) {
      excused++;
      verdict = 'allowed';
    } else {
      failed++;
      verdict = 'STALE';
    }
  } else if (failures.length) {
    failed++;
    verdict = 'FAIL';
  } else {
    passed++;
    verdict = 'ok';
  }
  const note = verdict === 'STALE'
    ? ` (passes, but line ${allowed.get(scenario)} of the allow-list excuses it: remove it there)`
    : verdict === 'allowed' ? ` (${failures.length} failing checks, allow-listed)` : '';
  console.log(`${verdict.padEnd(7)} ${scenario}${note}`);
  if (verdict === 'FAIL') {
    for (const c of failures) console.log(`        FAILURE ${c.id}: ${firstLine(c.errorMessage)}`);
  }
  if (verdict !== 'allowed') {
    for (const c of warns) console.log(`        WARNING ${c.id}: ${firstLine(c.errorMessage)}`);
  }
}
console.log(`conformance ${label}: ${passed} scenarios passed, ${failed} failed, ` +
            `${excused} allowed to fail; ${warnings} warnings`);
process.exit(failed ? 1 : 0);
