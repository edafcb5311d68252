// The interoperability test's Node hop: consumes FROM with the Node client
// and sends each message on to TO with its headers unchanged, adding "node"
// to payload.hops, in one transaction with the acknowledgement. A message with payload.poison fails every attempt.
// Prints "ready" once started, "dead <id>" for each dead-lettered message,
// and "stopped <json>" after a graceful stop on SIGTERM.
import { Producer, Worker } from '../../node/src/index.js';

const { PGFLOW_URL: url, PGFLOW_SCHEMA: schema, FROM: from, TO: to } = process.env;
const producer = new Producer({ connectionString: url, schema, poolSize: 4 });
const worker = new Worker({
  connectionString: url,
  schema,
  queue: from,
  concurrency: 4,
  pollIntervalMs: 500,
  consumerId: 'interop-node',
  handler: async (m, { ackTx }) => {
    if (m.payload.poison) throw new Error(`poison message ${m.payload.seq} refused by the node hop`);
    // The send and the acknowledgement commit together: a crash or a lost
    // lease cannot forward a message twice.
    const client = await producer.pool.connect();
    try {
      await client.query('BEGIN');
      await producer.send(to, { ...m.payload, hops: [...m.payload.hops, 'node'] }, { headers: m.headers, client });
      await ackTx(client);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
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
