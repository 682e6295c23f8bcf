// Package consumer processes the events topic: a consumer group whose
// members each own some partitions, processing every event once in effect
// and in order per (source, customer).
//
// The stages, one file each:
//
//   - consumer.go: the group member, its configuration, the poll loop, the
//     handler call (every call holds one of Concurrency slots).
//   - fence.go: taking a partition (owner epoch) and checking it in every
//     transaction; the stored position.
//   - worker.go: one per owned partition: takes its fetched records as
//     jobs; decode.go turns records into events (and dead-letters
//     malformed ones).
//   - gather.go: batch runners gather jobs of several partitions into one
//     batch, so that under live traffic a commit covers many events.
//   - plan.go: a batch's lanes (one per customer, in offset order) and the
//     snapshot they are decided on (blocked customers, known events).
//   - run.go: deciding each event and calling the handler.
//   - record.go: writing the outcomes and audit records in a transaction.
//   - batch.go: the transactions of a batch (a Handler's run inside them,
//     a Deliverer's calls outside them).
//   - blocks.go, failure.go: customer_blocks — retries when due and drains
//     of parked events, one transaction per step, by the partition's owner;
//     what a failure becomes (retry, DEAD, dead letter).
//   - replay.go: the operator's side: Replay, Unpark, BlockedCustomers.
//
// The calls go one way: consumer.go and worker.go start the work, gather.go
// and batch.go run it through plan, run and record, and blocks.go runs the
// steps of blocked customers through the same run and failure functions.
// docs/design.md ("Customer states", "Fencing", "Processing") is the
// contract this package keeps.
package consumer
