package wire

import (
	"testing"
	"time"
)

func BenchmarkAuditKafkaRecord(b *testing.B) {
	p, o := int32(3), int64(12345)
	r := &AuditRecord{SchemaVersion: AuditSchemaVersion, AuditID: "01a22394-a0c5-7e2b-9fff-37442765e558", EventID: "evt_1",
		Source: "generic", CustomerID: "cus_1", EventType: "invoice.paid", Action: ActionAccepted, HTTPStatus: 202,
		Partition: &p, Offset: &o, Actor: ActorIngest, Instance: "host-1", RequestID: "req-1", At: time.Now().UTC()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.KafkaRecord(DefaultAuditTopic); err != nil {
			b.Fatal(err)
		}
	}
}
