package tracing

import (
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// MaxAttrLen bounds, in bytes, the value of an attribute taken from what
// a client sent before it was authenticated (the receiver's url.path and
// user_agent.original): anyone can send a path or a User-Agent of
// megabytes, and a span holds its attributes until it is exported.
const MaxAttrLen = 256

// Bounded is s cut to at most MaxAttrLen bytes, at the start of a UTF-8
// sequence (so a valid string stays valid).
func Bounded(s string) string {
	if len(s) <= MaxAttrLen {
		return s
	}
	i := MaxAttrLen
	for range utf8.UTFMax - 1 {
		if utf8.RuneStart(s[i]) {
			break
		}
		i--
	}
	return s[:i]
}

// DBAttrs are the database-call attributes of a span of PostgreSQL work
// by op (SELECT, UPDATE, or BATCH for a transaction of several kinds of
// statements) on collections: db.collection.name when there is one,
// db.query.summary ("op table table") when there are several.
func DBAttrs(op string, collections ...string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL, semconv.DBOperationName(op)}
	switch len(collections) {
	case 0:
	case 1:
		attrs = append(attrs, semconv.DBCollectionName(collections[0]))
	default:
		summary := op
		for _, c := range collections {
			summary += " " + c
		}
		attrs = append(attrs, semconv.DBQuerySummary(summary))
	}
	return attrs
}
