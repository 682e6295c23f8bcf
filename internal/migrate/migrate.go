// Package migrate applies hookstream's embedded SQL migrations
// (schemas/migrations) with goose.
package migrate

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/hookstream/hookstream/schemas"
)

// Up applies every pending migration to the database at url and returns the
// versions it applied. It is safe to run concurrently from several processes:
// goose takes a session lock.
func Up(ctx context.Context, url string) ([]int64, error) {
	return UpTo(ctx, url, goose.MaxVersion)
}

// UpTo applies the pending migrations up to and including version.
func UpTo(ctx context.Context, url string, version int64) ([]int64, error) {
	return run(ctx, url, func(p *goose.Provider) ([]*goose.MigrationResult, error) { return p.UpTo(ctx, version) })
}

// DownTo rolls back the applied migrations above version, newest first.
func DownTo(ctx context.Context, url string, version int64) ([]int64, error) {
	return run(ctx, url, func(p *goose.Provider) ([]*goose.MigrationResult, error) { return p.DownTo(ctx, version) })
}

func run(ctx context.Context, url string, do func(*goose.Provider) ([]*goose.MigrationResult, error)) ([]int64, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("migrate: open database: %w", err)
	}
	defer func() { _ = db.Close() }()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, schemas.Migrations(), goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	res, err := do(p)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	applied := make([]int64, 0, len(res))
	for _, r := range res {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" database/sql driver
