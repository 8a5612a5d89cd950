// Lets @modelcontextprotocol/conformance 0.2.0-alpha.12 run on Node 18.19+
// and 20 (its dist is built for Node 22).  Load it before the suite:
//   node --import ./conformance-node-shim.mjs node_modules/.../dist/index.js ...
// On Node 22 and later it changes nothing.
//
// Two gaps, and why they are bridged this way:
//  1. dist/index.js imports `globSync` from "fs" by name.  Node < 22 has no
//     such export, and a missing named export of a builtin fails module
//     linking, so every subcommand dies before running.  Adding the
//     function to require('fs') does not help: the ESM view of a builtin
//     fixes its export names when "fs" is first loaded.  So a resolve hook
//     sends the bare specifier "fs" to this very file (with "?as-fs"
//     appended), which re-exports node:fs plus a small globSync.  Only the
//     tier-check subcommand calls it; it walks a directory and matches
//     "*", "?" and "**".  Our own imports say "node:fs": not redirected.
//  2. undici 7 refers to the global File at load; Node 18 has it only in
//     node:buffer.
import { register } from 'node:module';
import * as buffer from 'node:buffer';
import fs from 'node:fs';
import path from 'node:path';

export * from 'node:fs';
export default fs;

// A glob pattern as an anchored regular expression over '/'-separated
// relative paths.
function globRegExp(glob) {
  let src = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i];
    if (ch === '*' && glob[i + 1] === '*') {
      if (glob[i + 2] === '/') {
        src += '(?:[^/]*/)*'; // "**/": any number of directories
        i += 2;
      } else {
        src += '.*';
        i += 1;
      }
    } else if (ch === '*') {
      src += '[^/]*';
    } else if (ch === '?') {
      src += '[^/]';
    } else {
      src += /[\\^$.|+(){}[\]]/.test(ch) ? '\\' + ch : ch;
    }
  }
  return new RegExp(`^${src}$`);
}

// fs.globSync(patterns, { cwd }): the matching paths, relative to cwd.
export function globSync(patterns, options = {}) {
  const root = options.cwd ? String(options.cwd) : process.cwd();
  const tests = [].concat(patterns).map(globRegExp);
  const found = [];
  const visit = (rel) => {
    let entries;
    try {
      entries = fs.readdirSync(rel ? path.join(root, rel) : root, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const p = rel ? `${rel}/${entry.name}` : entry.name;
      if (tests.some((t) => t.test(p))) found.push(p.split('/').join(path.sep));
      if (entry.isDirectory()) visit(p);
    }
  };
  visit('');
  return found;
}

const isFsFacade = new URL(import.meta.url).search === '?as-fs';
if (!isFsFacade) {
  if (globalThis.File === undefined && buffer.File) globalThis.File = buffer.File;
  if (typeof fs.globSync !== 'function') {
    const facade = JSON.stringify(new URL('?as-fs', import.meta.url).href);
    const hooks = `export async function resolve(specifier, context, next) {
  return specifier === 'fs' ? { url: ${facade}, shortCircuit: true } : next(specifier, context);
}`;
    register('data:text/javascript,' + encodeURIComponent(hooks));
  }
}
