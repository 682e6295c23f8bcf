package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the GOGC hookstream runs with unless GOGC is set. The
// receiver's live heap is small (tens of MB) and its garbage is per-request,
// so collecting at 200% instead of 100% halves GC work for a few MB of
// heap; BENCHMARKS.md has the measurement. GOGC in the environment wins.
const defaultGCPercent = 200

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
