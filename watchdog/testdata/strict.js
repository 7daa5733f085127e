// strict.js: a Node http server, the strict peer for the watchdog's http
// mode (llhttp refuses a request with two Content-Length headers with 400).
// Usage: node strict.js HOST:PORT. It answers every request with JSON: the
// method, the URL, the headers as received (raw, so duplicates show) and
// the body's length.
const http = require('http');
const [host, port] = process.argv[2].split(':');
http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ method: req.method, url: req.url, rawHeaders: req.rawHeaders, length: n }));
  });
}).listen(Number(port), host);
