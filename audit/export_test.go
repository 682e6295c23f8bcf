package audit

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Term exposes one turn as the active relay step by step, for the fencing
// tests: Begin fences the relay before it, Read takes the next batch,
// Produce sends it in an open Kafka transaction, Commit commits that, and
// Store moves the position.
type Term struct{ t *term }

// Batch is a batch read by Term.Read.
type Batch struct{ b *batch }

// Len is the number of records in the batch.
func (b Batch) Len() int { return len(b.b.recs) }

func (r *Relay) Begin(ctx context.Context, conn *pgx.Conn) (*Term, error) {
	t, err := r.begin(ctx, conn)
	if err != nil {
		return nil, err
	}
	return &Term{t: t}, nil
}

func (t *Term) Read(ctx context.Context) (Batch, error) {
	b, err := t.t.read(ctx, t.t.pos)
	if err != nil {
		return Batch{}, err
	}
	return Batch{b: b}, nil
}

func (t *Term) Produce(ctx context.Context, b Batch) error { return t.t.produce(ctx, b.b.recs) }
func (t *Term) Commit(ctx context.Context) error           { return t.t.commit(ctx) }

func (t *Term) Store(ctx context.Context, b Batch) error {
	if err := t.t.store(ctx, b.b); err != nil {
		return err
	}
	t.t.pos = b.b.end
	return nil
}

func (t *Term) Close() { t.t.close() }

// ErrFenced is errFenced.
var ErrFenced = errFenced

// VerifyPublishingMeanwhile is Verify with meanwhile run once the topic is
// read.
func VerifyPublishingMeanwhile(ctx context.Context, cfg VerifyConfig, meanwhile func()) (*Report, error) {
	return verify(ctx, cfg, meanwhile)
}
