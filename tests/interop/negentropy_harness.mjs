// Negentropy v1 interop harness around nostr-tools' nip77, for Murmur's interop tests.
//
// Speaks the line protocol of hoytech/negentropy's test harnesses on stdin/stdout:
//   in:  item,<timestamp>,<hex id> | seal | initiate | msg,<hex>
//   out: msg,<hex> | have,<hex id> | need,<hex id> | done
// FRAMESIZELIMIT (environment, default 0 = unlimited) caps every produced message.
//
// Only the client role exists: nip77's reconcile() treats an incoming IdList as the
// initiator does (reports have/need, answers nothing), so it cannot serve a client.
// Usage: node negentropy_harness.mjs [--role client]

import readline from 'node:readline';
import { nip77 } from 'nostr-tools';

const { Negentropy, NegentropyStorageVector } = nip77;

const args = process.argv.slice(2);
const roleIndex = args.indexOf('--role');
const role = roleIndex >= 0 ? args[roleIndex + 1] : 'client';
if (role !== 'client') {
  process.stderr.write(`nostr-tools nip77 has no server role (asked for ${role})\n`);
  process.exit(2);
}

const frameSizeLimit = parseInt(process.env.FRAMESIZELIMIT || '0', 10);
if (!Number.isInteger(frameSizeLimit) || frameSizeLimit < 0) {
  process.stderr.write('bad FRAMESIZELIMIT\n');
  process.exit(2);
}
// nip77 has no "unlimited" setting (it refuses limits below 4096 and defaults to
// 60000); a limit no message can reach is the same thing.
const effectiveLimit = frameSizeLimit === 0 ? Number.MAX_SAFE_INTEGER : frameSizeLimit;

const storage = new NegentropyStorageVector();
let ne = null;
const out = [];

function flush() {
  if (out.length) {
    process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  }
}

function fail(message) {
  flush();
  process.stderr.write(`harness error: ${message}\n`);
  process.exit(1);
}

function checkSize(hex) {
  if (frameSizeLimit && hex.length / 2 > frameSizeLimit) {
    fail(`frameSizeLimit exceeded: ${hex.length / 2} > ${frameSizeLimit}`);
  }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });

rl.on('line', (line) => {
  if (!line.length) return;
  const fields = line.split(',');
  try {
    if (fields[0] === 'item') {
      if (fields.length !== 3) fail('wrong number of fields');
      storage.insert(parseInt(fields[1], 10), fields[2].trim());
    } else if (fields[0] === 'seal') {
      storage.seal();
      ne = new Negentropy(storage, effectiveLimit);
    } else if (fields[0] === 'initiate') {
      const q = ne.initiate();
      checkSize(q);
      out.push(`msg,${q}`);
    } else if (fields[0] === 'msg') {
      const have = [];
      const need = [];
      const q = ne.reconcile(fields[1] || '', (id) => have.push(id), (id) => need.push(id));
      for (const id of have) out.push(`have,${id}`);
      for (const id of need) out.push(`need,${id}`);
      if (q === null) {
        out.push('done');
      } else {
        checkSize(q);
        out.push(`msg,${q}`);
      }
    } else {
      fail(`unknown command: ${fields[0]}`);
    }
  } catch (err) {
    fail(err && err.message ? err.message : String(err));
  }
  flush();
});

rl.on('close', () => {
  flush();
  process.exit(0);
});
