package otlptest

import (
	"syscall"
	"time"
)

// CPUTime is the user plus system CPU time this process has used, every
// thread included (getrusage RUSAGE_SELF). Benchmarks report CPU per record
// from its difference; child processes, such as a local ClickHouse, are not
// counted.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err) // RUSAGE_SELF with a valid pointer cannot fail
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
