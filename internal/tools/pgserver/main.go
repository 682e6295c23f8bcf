// Command pgserver runs a private PostgreSQL server (internal/devstack, as
// `hookstream dev` does) in a data directory that outlives it, prints its
// URL once it accepts connections, and stops it on SIGINT or SIGTERM. The
// scale benchmark (scripts/bench-scale.sh) keeps its filled database in one.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hookstream/hookstream/internal/devstack"
)

func main() {
	dir := flag.String("data-dir", "", "the server's directory (created on first use)")
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: a free one)")
	var settings []string
	flag.Func("set", "a server setting name=value for this start (repeatable)", func(kv string) error {
		if !strings.Contains(kv, "=") {
			return fmt.Errorf("%q is not name=value", kv)
		}
		settings = append(settings, kv)
		return nil
	})
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{DataDir: *dir, Port: *port, Settings: settings, Logf: log.Printf})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pg.URL())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.Stop(sctx); err != nil {
		log.Fatal(err)
	}
}
