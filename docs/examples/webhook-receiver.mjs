// A webhook receiver that checks rtmrec's signatures with the official Standard Webhooks
// library (npm install standardwebhooks@1.1.1):
//   WEBHOOK_SECRET=whsec_... node webhook-receiver.mjs 8000
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

const secret = process.env.WEBHOOK_SECRET;
// A whsec_ secret is the key in base64; a raw secret is the key itself. Put the server
// behind your HTTPS proxy.
const wh = secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(secret, { format: 'raw' });

const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks).toString('utf8'); // verify the body exactly as sent
  try {
    const event = wh.verify(body, req.headers); // throws unless a signature matches and is recent
    console.log(`verified ${req.headers['webhook-id']} ${JSON.stringify(event)}`);
    res.writeHead(200).end(); // 200: rtmrec stops retrying
  } catch (err) {
    console.error(`rejected ${req.headers['webhook-id']}: ${err.message}`);
    res.writeHead(400).end('bad signature');
  }
});
server.listen(Number(process.argv[2]), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${server.address().port}`));
