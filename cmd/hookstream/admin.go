package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hookstream/hookstream/internal/migrate"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	fs := newFlagSet("migrate", stderr)
	s.registerDatabase(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	if s.databaseURL == "" {
		return errors.New("database-url (HOOKSTREAM_DATABASE_URL): required")
	}
	applied, err := migrate.Up(ctx, s.databaseURL)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
		return nil
	}
	fmt.Fprintf(stdout, "applied migrations %v\n", applied)
	return nil
}
