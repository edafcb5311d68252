// pgflow for Node: produce to and consume from pgflow queues, alongside Go
// and Python services, through pgflow's SQL functions.
export { Producer } from './producer.js';
export { Worker, Message } from './worker.js';
export { PermanentError, RetryAfterError, InputError, LeaseLostError } from './errors.js';
