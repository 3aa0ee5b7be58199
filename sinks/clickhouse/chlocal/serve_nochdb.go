//go:build !chdb

package chlocal

import "errors"

// Available reports whether this build links the ClickHouse engine.
const Available = false

func run([]string) error {
	return errors.New("this binary was built without the ClickHouse engine: rebuild with -tags chdb (make bin/faultline-clickhouse)")
}
