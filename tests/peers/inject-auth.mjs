// A tiny reverse proxy for the conformance run: the suite sends no credentials, so this adds
// `Authorization: Bearer $MCPGATE_TOKEN` and forwards everything else untouched (Host and
// Origin included, so the gateway's own DNS-rebinding checks are what the suite sees).
// Usage: MCPGATE_TOKEN=… node inject-auth.mjs LISTEN_PORT TARGET_PORT
import http from 'node:http';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
const token = process.env.MCPGATE_TOKEN;
if (!listenPort || !targetPort || !token) {
  console.error('usage: MCPGATE_TOKEN=… node inject-auth.mjs LISTEN_PORT TARGET_PORT');
  process.exit(2);
}

http
  .createServer((req, res) => {
    const headers = { ...req.headers, authorization: `Bearer ${token}` };
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers },
      (reply) => {
        res.writeHead(reply.statusCode, reply.headers);
        reply.pipe(res);
      },
    );
    upstream.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`shim: ${e.message}`);
    });
    req.pipe(upstream);
    res.on('close', () => upstream.destroy());
  })
  .listen(listenPort, '127.0.0.1', () => console.log(`shim on ${listenPort} -> ${targetPort}`));
