package main

import (
	"fmt"
	"runtime"
	"time"

	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// detectorCost measures the correlator's detection state and time with
// keys (service, environment, version) series, each sending one aggregate
// a minute for the three hours the correlator keeps: the heap it holds
// (after a GC, against the heap before) and the CPU per aggregate
// observed and judged.
func detectorCost(keys int) (heapMB, usPerAgg float64) {
	const versions, minutes = 5, 180
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC).Unix()
	series := keys / versions
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := detect.NewDetector(detect.DefaultRules())
	names := make([]string, series)
	vers := make([]string, versions)
	for i := range names {
		names[i] = fmt.Sprintf("service-%04d", i)
	}
	for v := range vers {
		vers[v] = fmt.Sprintf("v1.%d.0", v)
	}
	c0 := otlptest.CPUTime()
	n := 0
	for m := 0; m < minutes; m++ {
		for i, svc := range names {
			env := "production"
			if i%2 == 1 {
				env = "staging"
			}
			for _, v := range vers {
				d.Observe(detect.Aggregate{Service: svc, Environment: env, Version: v, Minute: t0 + int64(m)*60, Total: 200, Errors: uint64(m % 3)})
				n++
			}
		}
		d.Advance()
	}
	d.Prune(3 * time.Hour)
	cpu := otlptest.CPUTime() - c0
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(d)
	return float64(after.HeapAlloc-before.HeapAlloc) / 1e6, float64(cpu.Microseconds()) / float64(n)
}
