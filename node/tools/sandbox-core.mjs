// Puts the Rust host's sandbox into the core modules jco extracted from a component, at pack
// time (node/tools/transpile.mjs runs it on every `*.core*.wasm`). V8 can neither interrupt a
// synchronous wasm call on the calling thread nor say why `memory.grow` failed, so the modules
// carry both checks themselves, and src/component.js supplies the limits:
//
// - Deadline. Every function entry and every loop header charges a fuel counter with the number
//   of instructions of its region (the function body or loop body, without nested loops), and
//   `memory.copy`/`memory.fill`/`memory.init` charge one unit per 16 bytes of their length.
//   When the counter runs out (every ~1M units, about a millisecond of guest code),
//   `$ckpt_tick` refills it and calls the host's hook (table `ckpt_hooks`, slot 0), which
//   throws once the call's deadline has passed. Each region entry runs each of its instructions
//   at most once (within a region control only moves forward), so no guest code runs unmetered:
//   an endless loop or recursion reaches a tick. An empty hook slot traps (fails closed).
// - Memory limit. Every `memory.grow` becomes a call to `$ckpt_grow`, which refuses growth past
//   the global `ckpt_memory_limit` (in 64 KiB pages; the host sets it after instantiation) and
//   records the refusal (`ckpt_refusals`, `ckpt_refused_from`, `ckpt_refused_delta`), so a trap
//   that follows can be named after the limit, as the Rust host's ResourceLimiter does.
//
// Nothing is renumbered: the new type, table, globals and functions are appended after every
// existing one, so every existing index keeps its meaning. The module goes through wasm-tools'
// text format (jco's `print` and `parse`): the rewrite works on its lines, and refuses anything
// it does not know (an instruction that opens or closes a block it cannot match, a second
// memory, names it would shadow), so the build fails rather than ship a module with a hole.
//
//   node tools/sandbox-core.mjs <dir>   instruments every <dir>/*.core*.wasm in place

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Marker export of an instrumented module; its value is the version of this instrumentation. */
export const SANDBOX_EXPORT = 'ckpt_sandbox';
export const SANDBOX_VERSION = 1;
/** Fuel units between two calls of the host's hook. */
export const FUEL = 1 << 20;
/** Default memory limit in pages (64 MiB) until the host sets its own. */
const DEFAULT_LIMIT_PAGES = 1024;

const OPENERS = /^(block|loop|if|try_table|try)\b/;
const CLOSERS = /^(end|delegate)\b/;
const BULK = /^(memory\.copy|memory\.fill|memory\.init)\b/;

function check(cost) {
  return [
    'global.get $ckpt_fuel',
    `i32.const ${cost}`,
    'i32.sub',
    'global.set $ckpt_fuel',
    'global.get $ckpt_fuel',
    'i32.const 0',
    'i32.le_s',
    'if',
    '  call $ckpt_tick',
    'end',
  ];
}

// The length is the operand on top of the stack: kept there, and charged.
const BULK_CHARGE = [
  'local.tee $ckpt_len',
  'global.get $ckpt_fuel',
  'local.get $ckpt_len',
  'i32.const 4',
  'i32.shr_u',
  'i32.sub',
  'global.set $ckpt_fuel',
  'global.get $ckpt_fuel',
  'i32.const 0',
  'i32.le_s',
  'if',
  '  call $ckpt_tick',
  'end',
];

/**
 * The instrumented text of one core module, as printed by wasm-tools (flat instructions, one
 * per line; each function from a `  (func` line to its `  )` line).
 * @param {string} wat
 * @returns {{wat: string, functions: number, loops: number, grows: number, bulk: number}}
 */
export function instrument(wat) {
  if (wat.includes('$ckpt_') || wat.includes(`"${SANDBOX_EXPORT}"`)) {
    throw new Error('the module already uses the names this instrumentation adds (instrumented twice?)');
  }
  const lines = wat.split('\n');
  if (!/^\(module\b/.test(lines[0] ?? '')) throw new Error('not the text of a core module');
  const out = [];
  const stats = { functions: 0, loops: 0, grows: 0, bulk: 0 };
  let hasMemory = false;
  let i = 0;
  for (; i < lines.length; i++) {
    const line = lines[i];
    if (/^ {2}\(memory\b/.test(line) || /^ {2}\(import .*\(memory\b/.test(line)) {
      if (hasMemory) throw new Error('a module with more than one memory is not supported');
      hasMemory = true;
    }
    // Everything but a function body is kept as it is; so is an empty function (a one-line
    // `(func ...)`), which runs no instruction.
    if (!/^ {2}\(func\b/.test(line) || closesItself(line)) {
      out.push(line);
      continue;
    }
    // One function: header, locals, body, closing `  )`.
    const end = lines.indexOf('  )', i + 1);
    if (end < 0) throw new Error(`no end for the function at line ${i + 1}`);
    out.push(...instrumentFunction(lines.slice(i, end + 1), i + 1, stats));
    stats.functions++;
    i = end;
  }
  if (stats.grows > 0 && !hasMemory) throw new Error('memory.grow without a memory');
  // The module's closing paren is its last non-empty line.
  let close = out.length - 1;
  while (close >= 0 && out[close].trim() === '') close--;
  if (out[close] !== ')') throw new Error('the module text does not end with `)`');
  out.splice(close, 0, ...appendix(hasMemory));
  return { wat: out.join('\n'), ...stats };
}

function instrumentFunction(fn, firstLine, stats) {
  const header = fn[0];
  let body = 1;
  while (/^\s*\(local\b/.test(fn[body])) body++;
  // Regions: the function body, and each loop body (without nested loops). Each instruction
  // line is charged to the innermost region it is in.
  const active = [{ cost: 0, at: body }];
  const regions = [];
  const blocks = []; // for each open block: whether it is a loop (so it opened a region)
  const inserts = new Map(); // line index -> lines to insert before it
  let usesBulk = false;
  for (let k = body; k < fn.length - 1; k++) {
    const text = fn[k].trim();
    if (text === '' || text.startsWith(';;')) continue;
    active[active.length - 1].cost++;
    if (/^memory\.grow\b/.test(text)) {
      if (!/^memory\.grow(\s*;;.*)?$/.test(text)) {
        throw new Error(`line ${firstLine + k}: memory.grow of a memory other than 0: ${text}`);
      }
      fn[k] = fn[k].replace('memory.grow', 'call $ckpt_grow');
      stats.grows++;
    } else if (BULK.test(text)) {
      if (/^memory\.(copy|fill)\s+[^;\s]/.test(text)) {
        throw new Error(`line ${firstLine + k}: bulk memory operation on a memory other than 0: ${text}`);
      }
      const indent = fn[k].match(/^\s*/)[0];
      inserts.set(k, BULK_CHARGE.map((l) => indent + l));
      usesBulk = true;
      stats.bulk++;
    }
    if (OPENERS.test(text)) {
      const isLoop = /^loop\b/.test(text);
      blocks.push(isLoop);
      if (isLoop) {
        active.push({ cost: 0, at: k + 1 });
        stats.loops++;
      }
    } else if (CLOSERS.test(text)) {
      if (blocks.length === 0) throw new Error(`line ${firstLine + k}: \`${text}\` closes no block`);
      if (blocks.pop()) regions.push(active.pop());
    } else if (/^(catch|catch_all|else)\b/.test(text) && blocks.length === 0) {
      throw new Error(`line ${firstLine + k}: \`${text}\` outside a block`);
    }
  }
  if (blocks.length !== 0) throw new Error(`the function at line ${firstLine} leaves ${blocks.length} block(s) open`);
  regions.push(active.pop());
  const indentOf = (k) => (/^ {4,}/.test(fn[k]) ? fn[k].match(/^\s*/)[0] : '    ');
  for (const region of regions) {
    const lines = check(Math.max(region.cost, 1)).map((l) => indentOf(region.at) + l);
    inserts.set(region.at, [...lines, ...(inserts.get(region.at) ?? [])]);
  }
  const result = [header, ...fn.slice(1, body)];
  if (usesBulk) result.push('    (local $ckpt_len i32)');
  for (let k = body; k < fn.length; k++) {
    const before = inserts.get(k);
    if (before) result.push(...before);
    result.push(fn[k]);
  }
  return result;
}

/** Whether a `(func ...` line closes itself (a function with an empty body). */
function closesItself(line) {
  const bare = line.replace(/\(;.*?;\)/g, '').replace(/"(?:[^"\\]|\\.)*"/g, '');
  let depth = 0;
  for (const c of bare) {
    if (c === '(') depth++;
    else if (c === ')') depth--;
  }
  return depth <= 0;
}

function appendix(hasMemory) {
  const lines = [
    '  (type $ckpt_void (func))',
    '  (table $ckpt_hooks 1 1 funcref)',
    `  (global $ckpt_fuel (mut i32) i32.const ${FUEL})`,
    `  (global $ckpt_sandbox i32 i32.const ${SANDBOX_VERSION})`,
    '  (export "ckpt_hooks" (table $ckpt_hooks))',
    `  (export "${SANDBOX_EXPORT}" (global $ckpt_sandbox))`,
    '  (func $ckpt_tick (type $ckpt_void)',
    `    i32.const ${FUEL}`,
    '    global.set $ckpt_fuel',
    '    i32.const 0',
    '    call_indirect $ckpt_hooks (type $ckpt_void)',
    '  )',
  ];
  if (hasMemory) {
    lines.push(
      '  (type $ckpt_grow_type (func (param i32) (result i32)))',
      `  (global $ckpt_memory_limit (mut i32) i32.const ${DEFAULT_LIMIT_PAGES})`,
      '  (global $ckpt_refusals (mut i32) i32.const 0)',
      '  (global $ckpt_refused_from (mut i32) i32.const 0)',
      '  (global $ckpt_refused_delta (mut i32) i32.const 0)',
      '  (export "ckpt_memory_limit" (global $ckpt_memory_limit))',
      '  (export "ckpt_refusals" (global $ckpt_refusals))',
      '  (export "ckpt_refused_from" (global $ckpt_refused_from))',
      '  (export "ckpt_refused_delta" (global $ckpt_refused_delta))',
      // Growth to more pages than the limit (in u64, so no delta wraps) is refused and recorded.
      '  (func $ckpt_grow (type $ckpt_grow_type) (param $delta i32) (result i32)',
      '    memory.size',
      '    i64.extend_i32_u',
      '    local.get $delta',
      '    i64.extend_i32_u',
      '    i64.add',
      '    global.get $ckpt_memory_limit',
      '    i64.extend_i32_u',
      '    i64.gt_u',
      '    if',
      '      memory.size',
      '      global.set $ckpt_refused_from',
      '      local.get $delta',
      '      global.set $ckpt_refused_delta',
      '      global.get $ckpt_refusals',
      '      i32.const 1',
      '      i32.add',
      '      global.set $ckpt_refusals',
      '      i32.const -1',
      '      return',
      '    end',
      '    local.get $delta',
      '    memory.grow',
      '  )',
    );
  }
  return lines;
}

/** Instruments every `*.core*.wasm` in `dir` in place; returns what was done, per file. */
export async function instrumentDir(dir) {
  const { print, parse } = await import('@bytecodealliance/jco');
  const report = [];
  for (const name of readdirSync(dir).filter((n) => /\.core\d*\.wasm$/.test(n)).sort()) {
    const path = join(dir, name);
    const result = instrument(await print(readFileSync(path)));
    const bytes = await parse(result.wat);
    if (!WebAssembly.validate(bytes)) throw new Error(`${name}: the instrumented module does not validate`);
    writeFileSync(path, bytes);
    report.push({ name, functions: result.functions, loops: result.loops, grows: result.grows, bulk: result.bulk });
  }
  if (report.length === 0) throw new Error(`no core modules in ${dir}`);
  return report;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node tools/sandbox-core.mjs <dir with *.core*.wasm>');
    process.exit(2);
  }
  for (const r of await instrumentDir(dir)) {
    console.error(`sandbox-core: ${r.name}: ${r.functions} functions, ${r.loops} loops, ${r.grows} memory.grow, ${r.bulk} bulk memory ops`);
  }
}
