// Package async is Pulse's asynchronous invocation (issue 16): a request
// POSTed to the gateway's /async-function/<name> reaches Queue.Enqueue,
// which stores it in NATS JetStream (synced to disk before the 202) and
// records its state; Queue.Run's dispatchers invoke the function through
// the gateway's dispatch frontend with bounded concurrency per function,
// retry what may succeed later with exponential backoff, and hand the
// result to the callback deliverer, which POSTs it to the client's
// callback URL (checked against CallbackPolicy at enqueue and again at
// every connection) with its own retries.
//
// Delivery is at least once: a request whose dispatch was under way when
// pulsed stopped is dispatched again after restart (after the
// acknowledgement wait, AckWait), and a callback may be posted twice.
// Functions see the request id (contract.HeaderAsyncRequestID) and the
// attempt (contract.HeaderAttempt) on every dispatch so they can be
// idempotent.
//
// The queue engine is JetStream: embedded in pulsed by default (file
// storage under pulsed's state directory, every write synced), or an
// external NATS cluster (Config.URL). Streams: StreamRequests (one subject
// per function, work-queue retention: a request leaves when it is done or
// failed), StreamCallbacks, and the key-value bucket StateBucket holding
// each request's contract.AsyncRequest for Config.Retention.
package async
