package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the GOGC hookstream runs with unless GOGC is set. The
// receiver's live heap is small (a few MB) and nearly all its garbage is
// per request, so letting the heap grow to 5x the live set instead of 2x
// cuts GC work by more than half for tens of MB of RSS; BENCHMARKS.md has
// both measurements. GOGC (or GOMEMLIMIT tuning) in the environment wins.
const defaultGCPercent = 400

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
