// Command regsweep is an offline garbage collector and storage auditor for
// Docker Distribution registries (plain registry:2 and Harbor).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand(os.Stdout, os.Stderr)
	err := root.ExecuteContext(ctx)
	code := exitCode(err)
	if err != nil {
		fmt.Fprintf(os.Stderr, "regsweep: %v\n", err)
	}
	os.Exit(code)
}
