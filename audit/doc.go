// Package audit keeps hookstream's audit trail in its two places — the
// compacted topic hookstream.audit and the table audit_log — with the same
// audit_id in both, and no dual write:
//
//   - decisions made inside a PostgreSQL transaction (consumer, admin) are
//     written to audit_log in that transaction (Writer), and the Relay
//     publishes them to the topic once committed, in commit order
//     (audit_commits), in Kafka transactions, keeping its position in the
//     table audit_relay; a relay that takes over fences the one before;
//   - decisions made by the receiver are produced to the topic before its
//     reply, and the Sink copies them into the table.
//
// audit_id is unique in the table, so every copy is idempotent.
package audit
