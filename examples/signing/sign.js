#!/usr/bin/env node
// Send one request signed for sluice (docs/protection.md, "Request signing"),
// with Node's built-in modules only:
//
//   SLUICE_KEY=key_... SLUICE_SIGNING_SECRET=<64 hex digits> node sign.js METHOD URL [BODY]
//
// Prints the response body; exits 0 on a 2xx answer, 1 otherwise.
'use strict';
const crypto = require('crypto');
const http = require('http');
const https = require('https');

function canonical(method, path, query, timestamp, nonce, body) {
  // SORTED_QUERY: the raw name=value parts, sorted bytewise, as sent.
  const parts = query ? query.split('&').map((p) => Buffer.from(p)) : [];
  parts.sort(Buffer.compare);
  const bodyHash = crypto.createHash('sha256').update(body).digest('hex');
  return [method, path, parts.map(String).join('&'), timestamp, nonce, bodyHash].join('\n');
}

function main() {
  const [method, url, bodyText] = [process.argv[2].toUpperCase(), process.argv[3], process.argv[4]];
  const body = Buffer.from(bodyText || '');
  const u = new URL(url);
  // u.pathname and u.search keep the percent-encoding as given.
  const query = u.search.startsWith('?') ? u.search.slice(1) : '';
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = crypto.randomBytes(16).toString('hex');
  const mac = crypto
    .createHmac('sha256', Buffer.from(process.env.SLUICE_SIGNING_SECRET, 'hex'))
    .update(canonical(method, u.pathname, query, timestamp, nonce, body))
    .digest('hex');
  const headers = {
    'X-Sluice-Key': process.env.SLUICE_KEY,
    'X-Sluice-Timestamp': timestamp,
    'X-Sluice-Nonce': nonce,
    'X-Sluice-Signature': 'v1=' + mac,
  };
  if (body.length) headers['Content-Length'] = body.length;
  const lib = u.protocol === 'https:' ? https : http;
  const req = lib.request(url, { method, headers }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      process.stdout.write(Buffer.concat(chunks).toString() + '\n');
      process.exitCode = res.statusCode >= 200 && res.statusCode < 300 ? 0 : 1;
    });
  });
  req.on('error', (e) => {
    console.error(e.message);
    process.exitCode = 1;
  });
  req.end(body);
}

main();
