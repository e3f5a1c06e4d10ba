// Verifies an rtmrec signed manifest without rtmrec (Node.js 18+, no dependencies):
//   node verify-manifest.mjs RECORDING MANIFEST PUBLIC_KEY.pem
import { createHash, createPublicKey, verify } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';

const [file, manifestFile, keyFile] = process.argv.slice(2);
const fail = (why) => { console.error(`FAILED: ${why}`); process.exit(1); };
// RFC 8785 canonical JSON: members sorted (by UTF-16 code units, as sort() does), no
// whitespace; JSON.stringify writes strings and numbers exactly as RFC 8785 wants.
const canon = (v) => v === null || typeof v !== 'object' ? JSON.stringify(v)
  : Array.isArray(v) ? `[${v.map(canon).join(',')}]`
  : `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;

const { signature, ...facts } = JSON.parse(readFileSync(manifestFile, 'utf8'));
const key = createPublicKey(readFileSync(keyFile));
const keyId = createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex');
if (signature?.alg !== 'Ed25519') fail('the manifest is not signed with Ed25519');
if (signature.key_id && signature.key_id !== keyId) fail(`signed with key ${signature.key_id}, not ${keyId}`);
if (!verify(null, Buffer.from(canon(facts)), key, Buffer.from(signature.value, 'base64'))) fail('the signature does not match the manifest');
const hash = createHash('sha256');
let size = 0;
for await (const chunk of createReadStream(file)) { hash.update(chunk); size += chunk.length; }
const sha256 = hash.digest('hex');
if (sha256 !== facts.sha256 || size !== facts.size_bytes) fail(`the file (sha256 ${sha256}) is not the one signed (${facts.sha256})`);
console.log(`OK: ${file} is recording ${facts.recording_id}, ${facts.started_at} to ${facts.stopped_at} (${facts.clock} clock)`);
