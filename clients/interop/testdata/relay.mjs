// The interoperability test's Node hop: consumes FROM with the Node client
// and sends each message on to TO with its headers unchanged, adding "node"
// to payload.hops. A message with payload.poison fails every attempt.
// Prints "ready" once started, "dead <id>" for each dead-lettered message,
// and "stopped <json>" after a graceful stop on SIGTERM.
import { Producer, Worker } from '../../node/src/index.js';

const { PGFLOW_URL: url, PGFLOW_SCHEMA: schema, FROM: from, TO: to } = process.env;
const producer = new Producer({ connectionString: url, schema });
const worker = new Worker({
  connectionString: url,
  schema,
  queue: from,
  concurrency: 4,
  pollIntervalMs: 500,
  consumerId: 'interop-node',
  handler: async (m) => {
    if (m.payload.poison) throw new Error(`poison message ${m.payload.seq} refused by the node hop`);
    // The dedup key keeps a redelivery from sending a second copy while the
    // first is still queued.
    await producer.send(to, { ...m.payload, hops: [...m.payload.hops, 'node'] }, {
      headers: m.headers, dedupKey: `relay:${from}:${m.id}`,
    });
  },
  onSettle: (m, outcome) => {
    if (outcome === 'dead') console.log(`dead ${m.id}`);
  },
});
worker.start();
console.log('ready');
process.on('SIGTERM', async () => {
  const result = await worker.stop({ timeoutMs: 5000 });
  await producer.end();
  console.log(`stopped ${JSON.stringify(result)}`);
  process.exit(0);
});
