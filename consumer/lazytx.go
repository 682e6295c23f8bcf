package consumer

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// lazySavepoint is the pgx.Tx a handler gets inside a batch transaction: a
// savepoint that is only taken when the handler first uses the database, so
// a handler that never does (the no-op handler, HTTP delivery) costs no
// round trips. Rolling it back undoes the handler's writes and nothing else.
type lazySavepoint struct {
	ctx    context.Context
	parent pgx.Tx
	sp     pgx.Tx
	err    error
}

func (l *lazySavepoint) open(ctx context.Context) (pgx.Tx, error) {
	if l.sp == nil && l.err == nil {
		l.sp, l.err = l.parent.Begin(ctx)
	}
	return l.sp, l.err
}

// finish releases the savepoint (ok) or rolls it back.
func (l *lazySavepoint) finish(ctx context.Context, ok bool) error {
	if l.err != nil {
		return l.err
	}
	if l.sp == nil {
		return nil
	}
	if ok {
		return l.sp.Commit(ctx)
	}
	return l.sp.Rollback(ctx)
}

func (l *lazySavepoint) Begin(ctx context.Context) (pgx.Tx, error) {
	sp, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	return sp.Begin(ctx)
}

// Commit releases the savepoint; the outer transaction commits later, with
// the event's outcome.
func (l *lazySavepoint) Commit(ctx context.Context) error {
	if l.sp == nil {
		return l.err
	}
	return l.sp.Commit(ctx)
}

func (l *lazySavepoint) Rollback(ctx context.Context) error {
	if l.sp == nil {
		return l.err
	}
	return l.sp.Rollback(ctx)
}

func (l *lazySavepoint) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	sp, err := l.open(ctx)
	if err != nil {
		return 0, err
	}
	return sp.CopyFrom(ctx, table, cols, src)
}

func (l *lazySavepoint) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	sp, err := l.open(ctx)
	if err != nil {
		return errBatchResults{err}
	}
	return sp.SendBatch(ctx, b)
}

func (l *lazySavepoint) LargeObjects() pgx.LargeObjects {
	sp, err := l.open(l.ctx)
	if err != nil {
		return l.parent.LargeObjects()
	}
	return sp.LargeObjects()
}

func (l *lazySavepoint) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	sp, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	return sp.Prepare(ctx, name, sql)
}

func (l *lazySavepoint) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	sp, err := l.open(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return sp.Exec(ctx, sql, args...)
}

func (l *lazySavepoint) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	sp, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	return sp.Query(ctx, sql, args...)
}

func (l *lazySavepoint) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	sp, err := l.open(ctx)
	if err != nil {
		return errRow{err}
	}
	return sp.QueryRow(ctx, sql, args...)
}

func (l *lazySavepoint) Conn() *pgx.Conn { return l.parent.Conn() }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type errBatchResults struct{ err error }

func (r errBatchResults) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, r.err }
func (r errBatchResults) Query() (pgx.Rows, error)         { return nil, r.err }
func (r errBatchResults) QueryRow() pgx.Row                { return errRow(r) }
func (r errBatchResults) Close() error                     { return r.err }
func (r errBatchResults) Tx() pgx.Tx                       { return nil }
