// The Express app of sluice's e2e tests (tests/e2e/test_express.py): the same
// endpoints as the DRF app (tests/e2e/apps/drf). Prints "READY <port>" once
// it listens on 127.0.0.1 (PORT=0: a free port).
'use strict';

const crypto = require('crypto');
const express = require('express');

const app = express();
// Behind sluice on this machine: req.ip, req.protocol and req.hostname come
// from X-Forwarded-For/-Proto/-Host, believed only from the loopback.
app.set('trust proxy', 'loopback');

const counts = { leads: 0, market: 0, big: 0, connections: 0 };
const MB = 1 << 20;

app.post('/api/leads/', (req, res) => {
  const h = crypto.createHash('sha256');
  let n = 0;
  req.on('data', (c) => { h.update(c); n += c.length; });
  req.on('end', () => {
    counts.leads += 1;
    res.status(201).json({
      received: n,
      sha256: h.digest('hex'),
      content_length: req.get('content-length') || null,
      transfer_encoding: req.get('transfer-encoding') || null,
      lead: counts.leads,
    });
  });
});

app.get('/api/market/overview', (req, res) => {
  counts.market += 1;
  res.json({ sentiment: 'bullish', indices: { SLC: 101.5 }, served: counts.market });
});

// <mb> MiB (?mb=N) with a Content-Length, written as fast as the socket takes
// it (backpressure: wait for 'drain'). Byte i is i % 251.
const PIECE = Buffer.alloc(251 * 262);
for (let i = 0; i < PIECE.length; i++) PIECE[i] = i % 251;
app.get('/api/big', (req, res) => {
  const size = parseInt(req.query.mb || '1', 10) * MB;
  counts.big += 1;
  res.set('Content-Type', 'application/octet-stream');
  res.set('Content-Length', String(size));
  if (req.method === 'HEAD') return res.end();
  let sent = 0;
  const pump = () => {
    while (sent < size) {
      const n = Math.min(PIECE.length, size - sent);
      sent += n;
      if (!res.write(n === PIECE.length ? PIECE : PIECE.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
});

app.get('/api/empty', (req, res) => res.status(204).end());

// Express sets a (weak) ETag itself and answers If-None-Match with 304.
app.get('/api/etag', (req, res) => res.type('text/plain').send('versioned body\n'));

app.get('/api/redirect', (req, res) => {
  let to = req.query.to || '/api/headers';
  if (req.query.absolute) to = `${req.protocol}://${req.hostname}${to}`;
  res.redirect(to);
});

app.all('/api/headers', (req, res) => {
  const headers = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i].toLowerCase();
    headers[k] = k in headers ? `${headers[k]},${req.rawHeaders[i + 1]}` : req.rawHeaders[i + 1];
  }
  res.set('X-App-Internal', 'secret');
  res.json({
    headers,
    host: req.hostname,
    scheme: req.protocol,
    ip: req.ip,
    remote_addr: req.socket.remoteAddress,
    path: req.path,
    query: req.originalUrl.includes('?') ? req.originalUrl.split('?')[1] : '',
    method: req.method,
  });
});

app.get('/api/stats', (req, res) => res.json(counts));

const server = app.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
server.on('connection', () => { counts.connections += 1; });
// Node closes idle keep-alive connections after keepAliveTimeout (5 s by
// default): the tests shorten it to meet it in the gateway's pool.
if (process.env.KEEPALIVE_MS) server.keepAliveTimeout = parseInt(process.env.KEEPALIVE_MS, 10);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
