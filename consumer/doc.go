// Package consumer processes the events topic: a consumer group whose
// members each own some partitions, processing every event once in effect
// and in order per customer.
//
// For each record it claims the event in PostgreSQL (events, keyed by
// (source, event_id)), runs the Handler inside the same transaction as the
// state change and the audit rows, and commits; a redelivered event that is
// already PROCESSED is skipped. Within a partition, different customers run
// concurrently (Config.Concurrency) and each customer strictly in offset
// order. A failing event is retried with exponential backoff and jitter; when
// its attempts run out, or it fails permanently, it goes DEAD, a copy goes to
// the dead-letter topic and its customer is parked: the customer's later
// events are stored PARKED until the blocker is replayed or skipped.
//
// A partition's position is stored in PostgreSQL (consumer_offsets) once
// everything below it is durable, and a new owner resumes from there; Kafka's
// committed offsets follow for lag tools.
package consumer
